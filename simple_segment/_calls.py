"""The six Segment calls, with the official library's signatures, shared by Client and Batch."""

from __future__ import annotations

import datetime as dt
from typing import Any

from . import _messages
from ._messages import Message

Result = tuple[bool, Message]
"""``(delivered, msg)``: what every call returns, as in the official library."""


class Calls:
    """identify, track, page, screen, group and alias; subclasses say what ``_emit`` does."""

    __slots__ = ()

    def _emit(self, msg: Message) -> Result:
        raise NotImplementedError

    def identify(  # noqa: PLR0913 - the official signature
        self,
        user_id: str | int | None = None,
        traits: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        timestamp: dt.datetime | None = None,
        anonymous_id: str | int | None = None,
        integrations: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Result:
        """Record who a user is and what is known about them (``traits``).

        Returns ``(True, msg)`` with ``msg`` the message as sent.  Raises
        :class:`~simple_segment.ValidationError` for bad arguments (nothing is sent) and
        a :class:`~simple_segment.DeliveryError` when delivery fails and no
        ``on_error`` is set.
        """
        return self._emit(
            _messages.identify(user_id, traits, context, timestamp, anonymous_id, integrations, message_id)
        )

    def track(  # noqa: PLR0913 - the official signature
        self,
        user_id: str | int | None = None,
        event: str | None = None,
        properties: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        timestamp: dt.datetime | None = None,
        anonymous_id: str | int | None = None,
        integrations: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Result:
        """Record that a user did ``event``, with its ``properties``.

        Returns and raises as :meth:`identify`.
        """
        return self._emit(
            _messages.track(user_id, event, properties, context, timestamp, anonymous_id, integrations, message_id)
        )

    def alias(  # noqa: PLR0913 - the official signature
        self,
        previous_id: str | int | None = None,
        user_id: str | int | None = None,
        context: dict[str, Any] | None = None,
        timestamp: dt.datetime | None = None,
        integrations: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Result:
        """Merge the identity ``previous_id`` into ``user_id``.

        Returns and raises as :meth:`identify`.
        """
        return self._emit(_messages.alias(previous_id, user_id, context, timestamp, integrations, message_id))

    def group(  # noqa: PLR0913 - the official signature
        self,
        user_id: str | int | None = None,
        group_id: str | int | None = None,
        traits: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        timestamp: dt.datetime | None = None,
        anonymous_id: str | int | None = None,
        integrations: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Result:
        """Associate a user with the group ``group_id`` (an account, a company).

        Returns and raises as :meth:`identify`.
        """
        return self._emit(
            _messages.group(user_id, group_id, traits, context, timestamp, anonymous_id, integrations, message_id)
        )

    def page(  # noqa: PLR0913 - the official signature
        self,
        user_id: str | int | None = None,
        category: str | None = None,
        name: str | None = None,
        properties: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        timestamp: dt.datetime | None = None,
        anonymous_id: str | int | None = None,
        integrations: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Result:
        """Record a page view.

        Returns and raises as :meth:`identify`.
        """
        return self._emit(
            _messages.page(
                user_id, category, name, properties, context, timestamp, anonymous_id, integrations, message_id
            )
        )

    def screen(  # noqa: PLR0913 - the official signature
        self,
        user_id: str | int | None = None,
        category: str | None = None,
        name: str | None = None,
        properties: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        timestamp: dt.datetime | None = None,
        anonymous_id: str | int | None = None,
        integrations: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Result:
        """Record a mobile screen view.

        Returns and raises as :meth:`identify`.
        """
        return self._emit(
            _messages.page(
                user_id,
                category,
                name,
                properties,
                context,
                timestamp,
                anonymous_id,
                integrations,
                message_id,
                kind="screen",
            )
        )
