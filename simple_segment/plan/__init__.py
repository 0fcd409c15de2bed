"""Tracking plans: check messages against Segment's plan at the call, in files and in tests.

Load the plan JSON (Segment's Public API or Terraform) once and give it to a client::

    from simple_segment.plan import TrackingPlan

    plan = TrackingPlan.load("tracking_plan.json")
    client = simple_segment.Client(write_key, tracking_plan=plan, on_violation="raise")

:meth:`TrackingPlan.validate` lists the :class:`Violation` of one message;
``simple-segment plan check`` and ``plan codegen`` work on files.  Validation uses
``jsonschema`` (draft-07, formats checked), installed by ``pip install
'simple-segment[plan]'`` and imported only when a plan is loaded.

Since: 0.2.0
"""

from __future__ import annotations

from ._gate import OnViolation
from ._plan import Rule, TrackingPlan, Unplanned, Violation

__all__ = ["OnViolation", "Rule", "TrackingPlan", "Unplanned", "Violation"]

for _public in (Rule, TrackingPlan, Violation):
    _public.__module__ = __name__
del _public
