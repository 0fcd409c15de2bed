"""The six calls as methods, made from the builders in ``_messages`` (their one signature).

``Calls`` is shared by :class:`~simple_segment.Client` and
:class:`~simple_segment.Batch`, which say what ``_emit`` does with a built message;
:func:`forward` makes the module-level functions.  Every one of them shows the
builder's real signature to ``inspect``, editors and type checkers.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Concatenate, ParamSpec

from . import _messages
from ._messages import Message, Result

__all__ = ["Calls", "Result", "forward"]

P = ParamSpec("P")

_RETURNS = """

Returns ``(ok, msg)``: ``msg`` is the message as sent (in a batch, as it will be sent).
``ok`` is False only when nothing was sent for it: a ``before_send`` hook dropped it,
or delivery failed and ``on_error`` took the error.  Raises
:class:`~simple_segment.ValidationError` for a bad argument (nothing is sent).  On a
client, a failed delivery raises a :class:`~simple_segment.DeliveryError` unless
``on_error`` is set; in a batch, failures are reported when the block ends
(:class:`~simple_segment.BatchDeliveryError`).
"""


def _signature(build: Callable[..., Message], *, bound: bool) -> inspect.Signature:
    signature = inspect.signature(build)
    parameters = list(signature.parameters.values())
    if bound:
        parameters.insert(0, inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY))
    return signature.replace(parameters=parameters, return_annotation="Result")


def _method(build: Callable[P, Message]) -> Callable[Concatenate[Calls, P], Result]:
    def call(self: Calls, /, *args: P.args, **kwargs: P.kwargs) -> Result:
        return self._emit(build(*args, **kwargs))

    functools.update_wrapper(call, build)
    call.__doc__ = f"{build.__doc__}{_RETURNS}"
    call.__signature__ = _signature(build, bound=True)  # type: ignore[attr-defined]
    return call


def forward(build: Callable[P, Message], target: Callable[[], Calls]) -> Callable[P, Result]:
    """Make the module-level function of one call: ``target()``'s method, same signature."""
    name = build.__name__

    def call(*args: P.args, **kwargs: P.kwargs) -> Result:
        return getattr(target(), name)(*args, **kwargs)  # type: ignore[no-any-return]

    functools.update_wrapper(call, build)
    call.__doc__ = f"{build.__doc__}  Sent with ``default_client``.{_RETURNS}"
    call.__signature__ = _signature(build, bound=False)  # type: ignore[attr-defined]
    return call


class Calls:
    """identify, track, page, screen, group and alias; subclasses say what ``_emit`` does."""

    __slots__ = ()

    def _emit(self, msg: Message) -> Result:
        raise NotImplementedError

    identify = _method(_messages.identify)
    track = _method(_messages.track)
    page = _method(_messages.page)
    screen = _method(_messages.screen)
    group = _method(_messages.group)
    alias = _method(_messages.alias)
