"""NON_BLOCKING function calls, sans-IO: the calls running, and the replies their results
bring, scheduled as each response asks.

A reply whose tool calls are all NON_BLOCKING does not wait for them (``emulator.player``):
the rest of its turn is ``defer()``-ed until every call has its final response. Each
response is folded in as its ``scheduling`` says (google-genai: "Defaults to WHEN_IDLE"):

- WHEN_IDLE: the deferred reply is said after the reply playing now (at once if none);
- INTERRUPT: at once, interrupting the reply playing now (``on_responses`` returns True);
- SILENT: the result only joins the context; nothing is said.

A response with ``willContinue`` keeps its call open (a generator); unless SILENT, the
call's scripted ``progress`` line is said for it. Pipecat also writes ``scheduling`` inside
``response``: either place counts, the field first.

Bounded: at most ``MAX_RUNNING_CALL_GROUPS`` groups of running calls (the oldest is
forgotten: a client that never answers cannot grow it) and ``MAX_QUEUED_RESULT_REPLIES``
replies waiting to be said (past it a result is taken silently and counted in ``dropped``).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from emulator.limits import MAX_QUEUED_RESULT_REPLIES, MAX_RUNNING_CALL_GROUPS
from emulator.scenario import Reply
from protocol import wire

_SCHEDULINGS = ("SILENT", "WHEN_IDLE", "INTERRUPT")


@dataclass(frozen=True)
class ResultReply:
    """What the model says about NON_BLOCKING results, as a generation of its own."""

    replies: tuple[Reply, ...]
    interrupt: bool = False  # INTERRUPT: it cuts the reply playing now short


@dataclass
class _Group:
    replies: tuple[Reply, ...]
    progress: dict[str, str]
    running: set[str]


@dataclass
class ToolResults:
    max_groups: int = MAX_RUNNING_CALL_GROUPS
    max_queued: int = MAX_QUEUED_RESULT_REPLIES
    dropped: int = 0  # results past the queue's limit, taken silently
    _groups: OrderedDict[tuple[str, ...], _Group] = field(default_factory=OrderedDict)
    _queue: deque[ResultReply] = field(default_factory=deque)

    @property
    def busy(self) -> bool:
        """Calls still running, or replies about their results not yet said: the model
        has more to do (interactionStatus IN_PROGRESS)."""
        return bool(self._groups or self._queue)

    @property
    def running(self) -> frozenset[str]:
        """The NON_BLOCKING calls not finished yet (a barge-in does not cancel them)."""
        return frozenset(call for group in self._groups.values() for call in group.running)

    def defer(
        self, call_ids: Sequence[str], replies: tuple[Reply, ...], progress: dict[str, str]
    ) -> None:
        """``replies`` wait until each of ``call_ids`` has its final response."""
        self._groups[tuple(call_ids)] = _Group(replies, dict(progress), set(call_ids))
        while len(self._groups) > self.max_groups:
            self._groups.popitem(last=False)

    def on_responses(self, responses: Sequence[wire.FunctionResponse]) -> bool:
        """Fold responses in; True if one asks to interrupt the reply playing now."""
        interrupt = False
        for response in responses:
            found = self._group_of(response.id or "")
            if found is None:
                continue  # a BLOCKING call's, or one already finished or forgotten
            key, group = found
            scheduling = _scheduling(response)
            if response.will_continue:
                line = group.progress.get(response.id or "")
                if line and scheduling != "SILENT":
                    interrupt |= self._queue_reply((Reply(say=line),), scheduling)
                continue
            group.running.discard(response.id or "")
            if group.running:
                continue
            del self._groups[key]
            if group.replies and scheduling != "SILENT":
                interrupt |= self._queue_reply(group.replies, scheduling)
        return interrupt

    def next_reply(self) -> ResultReply | None:
        """The next reply about results to say, or None."""
        return self._queue.popleft() if self._queue else None

    def _group_of(self, call_id: str) -> tuple[tuple[str, ...], _Group] | None:
        for key, group in self._groups.items():
            if call_id in group.running:
                return key, group
        return None

    def _queue_reply(self, replies: tuple[Reply, ...], scheduling: str) -> bool:
        if len(self._queue) >= self.max_queued:
            self.dropped += 1
            return False
        if scheduling == "INTERRUPT":
            self._queue.appendleft(ResultReply(replies, interrupt=True))
            return True
        self._queue.append(ResultReply(replies))
        return False


def _scheduling(response: wire.FunctionResponse) -> str:
    scheduling = response.scheduling
    if scheduling not in _SCHEDULINGS:
        inner = (response.response or {}).get("scheduling")
        scheduling = inner if inner in _SCHEDULINGS else "WHEN_IDLE"
    return scheduling
