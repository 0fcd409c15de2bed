"""``python -m simple_segment``: the same program as the ``simple-segment`` command."""

from ._cli import main

raise SystemExit(main())
