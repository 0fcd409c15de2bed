"""Each error names its ``args`` slots (``_FIELDS``), in the order of its constructor's parameters."""

from __future__ import annotations

import inspect
import json
import pickle

import pytest

from simple_segment import errors

# The one constructor parameter whose slot has another name: a batch's unsent
# messages are DeliveryError's ``messages``.
_SLOT_OF = {"unsent": "messages"}

_CLASSES = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.SegmentError) and cls._FIELDS
]


@pytest.mark.parametrize("cls", _CLASSES, ids=lambda cls: cls.__name__)
def test_fields_name_the_constructor_parameters_in_order(cls: type[errors.SegmentError]) -> None:
    """``_FIELDS`` lists the constructor's parameters, so ``type(e)(*e.args)`` rebuilds the error."""
    parameters = [name for name in inspect.signature(cls).parameters if name != "self"]
    assert [_SLOT_OF.get(name, name) for name in parameters] == list(cls._FIELDS)


def test_every_error_class_with_args_names_them() -> None:
    """Every error that takes arguments of its own is in the table above (none reads args by number)."""
    names = {cls.__name__ for cls in _CLASSES}
    assert {"ValidationError", "MessageTooLargeError", "DeliveryError", "APIError", "RateLimitError"} <= names
    assert {"BatchDeliveryError", "ConfigurationError", "NetworkError", "TokenError"} <= names


def test_named_slots_survive_json_and_pickle() -> None:
    """Every named attribute reads the same after a JSON round trip of ``args`` and after pickle."""
    error = errors.RateLimitError(
        429, "rate_limited", "slow down", object(), {"retry-after": "2"}, [{"type": "track"}], 3, 2.0
    )
    rebuilt = type(error)(*json.loads(json.dumps(error.args)))
    unpickled = pickle.loads(pickle.dumps(error))
    for copy in (rebuilt, unpickled):
        assert copy.args == error.args
        assert (copy.status, copy.code, copy.message, copy.headers) == (429, "rate_limited", "slow down", {"retry-after": "2"})
        assert (copy.messages, copy.attempts, copy.retry_after) == ([{"type": "track"}], 3, 2.0)
        assert copy.response is None
    batch = errors.RetryableBatchDeliveryError("lost", [{"type": "identify"}], 2, 5)
    again = type(batch)(*json.loads(json.dumps(batch.args)))
    assert (again.unsent, again.messages, again.attempts, again.sent) == ([{"type": "identify"}], [{"type": "identify"}], 2, 5)
    too_large = errors.MessageTooLargeError(40_000, 32_768, "batch[3]")
    assert pickle.loads(pickle.dumps(too_large)).field == "batch[3]"


def test_setting_messages_writes_its_slot() -> None:
    """``messages`` is settable and lands in its named slot, so it survives a rebuild."""
    error = errors.DeliveryError("failed", [], 1)
    error.messages = [{"type": "track", "event": "E"}]
    assert error.args[errors.DeliveryError._FIELDS.index("messages")] == [{"type": "track", "event": "E"}]
    assert type(error)(*error.args).messages == error.messages
