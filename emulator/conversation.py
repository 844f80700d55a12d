"""Conversations: what an emulated session keeps across its connections, and the handles
that resume it.

A ``Conversation`` is the protocol's ``SessionRecord`` (session id, audio time, tool-call
numbering) plus the script's position, a short history, the NON_BLOCKING calls still
running (their results may come on a later connection) and whether a connection serves
it now (the service refuses a resume while the old socket is open). ``ConversationStore`` issues
resumption handles and finds a conversation by one; it holds at most
``MAX_RESUMPTION_HANDLES`` handles, each valid for ``RESUMPTION_HANDLE_LIFETIME_S``.
Sans-IO: time comes from the ``now`` it is given.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from emulator.limits import (
    MAX_HISTORY_ENTRIES,
    MAX_RESUMPTION_HANDLES,
    RESUMPTION_HANDLE_LIFETIME_S,
)
from emulator.tool_results import ToolResults
from protocol.server_session import SessionRecord


def _history() -> deque[tuple[str, str]]:
    return deque(maxlen=MAX_HISTORY_ENTRIES)


@dataclass
class Conversation:
    record: SessionRecord
    next_turn: int = 0  # the scenario's turn that answers the next user turn
    history: deque[tuple[str, str]] = field(default_factory=_history)  # (role, text)
    results: ToolResults = field(default_factory=ToolResults)
    # Whether the connection serving it is still open (None: no connection serves it).
    in_use: Callable[[], bool] | None = None

    @property
    def served_elsewhere(self) -> bool:
        """A connection serves this conversation and its socket is still open."""
        return self.in_use is not None and self.in_use()


class ConversationStore:
    def __init__(
        self,
        *,
        id_prefix: str,
        now: Callable[[], float],
        max_handles: int = MAX_RESUMPTION_HANDLES,
        handle_lifetime: float = RESUMPTION_HANDLE_LIFETIME_S,
    ) -> None:
        self._prefix = id_prefix
        self._now = now
        self._max_handles = max_handles
        self._lifetime = handle_lifetime
        self._handles: OrderedDict[str, tuple[Conversation, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._handles)

    def new(self) -> Conversation:
        return Conversation(SessionRecord(f"{self._prefix}-{secrets.token_hex(6)}"))

    def issue_handle(self, conversation: Conversation) -> str:
        """A new handle for ``conversation``; the oldest handle is forgotten past the limit."""
        handle = f"{conversation.record.session_id}.{secrets.token_urlsafe(12)}"
        self._handles[handle] = (conversation, self._now() + self._lifetime)
        while len(self._handles) > self._max_handles:
            self._handles.popitem(last=False)
        return handle

    def resume(self, handle: str) -> Conversation | None:
        """The conversation ``handle`` continues, or None if it is unknown or expired."""
        entry = self._handles.get(handle)
        if entry is None:
            return None
        conversation, expires = entry
        if self._now() >= expires:
            del self._handles[handle]
            return None
        return conversation
