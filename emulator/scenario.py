"""Scenarios: what the emulator's "model" says, and how the emulated service behaves.

A scenario is a JSON or TOML file (format in the README). Unknown keys are errors, so a
typo does not silently fall back to a default. Without a file, ``Scenario()`` gives a
sensible default conversation.

The models served and their families' rules come from ``protocol.models``; a scenario
may serve more names (``behaviour.models``), decide what happens to unknown ones
(``behaviour.unknown_models``) and override any rule of a family where the service's
behaviour is doubtful (``behaviour.families``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import msgspec

from emulator.audio import AudioFileError, read_wav
from protocol import models
from protocol.models import ModelFamily


class ScenarioError(ValueError):
    """The scenario file is unreadable or invalid; the message names the field."""


class _Spec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class ToolCallSpec(_Spec, frozen=True):
    name: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    # NON_BLOCKING only: said for each response that keeps the call open (willContinue)
    # and is not SILENT.
    progress: str | None = None


class SearchResult(_Spec, frozen=True):
    uri: str
    title: str = ""


class SearchSpec(_Spec, frozen=True):
    """A Google Search the reply is grounded on (sent only if the setup declared
    ``googleSearch``): ``groundingMetadata`` with the reply's first message."""

    queries: tuple[str, ...] = ()
    results: tuple[SearchResult, ...] = ()


class CodeSpec(_Spec, frozen=True):
    """Code the model runs before it speaks (only if the setup declared
    ``codeExecution``): an ``executableCode`` part, then its ``codeExecutionResult``."""

    code: str
    output: str = ""
    outcome: str = "OUTCOME_OK"
    language: str = "PYTHON"


class UrlSpec(_Spec, frozen=True):
    """A URL the model fetched (only if the setup declared ``urlContext``)."""

    url: str
    status: str = "URL_RETRIEVAL_STATUS_SUCCESS"


class Reply(_Spec, frozen=True):
    """One step of a reply: speech (``say``, optionally from a WAV file) or tool calls.

    Tool calls listed together are sent in one ``toolCall`` message (parallel calls). If
    any of them is BLOCKING, the reply waits until each has its response. If all are
    NON_BLOCKING (declared so, or by the model's default), the model says ``meanwhile``
    (if given) and ends its turn; the rest of the turn's replies are said once every call
    has its final response, as the response's ``scheduling`` says (WHEN_IDLE: after the
    reply playing then; INTERRUPT: at once, interrupting it; SILENT: never).
    ``search``, ``code`` and ``urls`` use the built-in tools the setup declared.
    """

    say: str | None = None
    audio: str | None = None
    tool_calls: tuple[ToolCallSpec, ...] = ()
    meanwhile: str | None = None
    search: SearchSpec | None = None
    code: CodeSpec | None = None
    urls: tuple[UrlSpec, ...] = ()


class Turn(_Spec, frozen=True):
    """One exchange: what the user is taken to have said, and the model's reply steps;
    ``turn_complete_reason`` and ``waiting_for_input`` go with its turnComplete."""

    user: str = "(the user spoke)"
    replies: tuple[Reply, ...] = (Reply(say="This is the Gemini Live emulator speaking."),)
    turn_complete_reason: str | None = None
    waiting_for_input: bool = False


class FamilyRules(_Spec, frozen=True):
    """Overrides of one model family's rules (``protocol.models.ModelFamily``); a field
    left out keeps the family's own value."""

    content_role_required: bool | None = None
    history_config: bool | None = None
    seed_ends_with_user: bool | None = None
    placeholder_gets_empty_turn: bool | None = None
    thinking: Literal["budget", "level", "level-required", "none"] | None = None
    thinking_levels: frozenset[str] | None = None
    tool_behaviors: frozenset[str] | None = None
    default_tool_behavior: Literal["BLOCKING", "NON_BLOCKING"] | None = None
    interaction_status: bool | None = None
    proactive_audio: Literal["optional", "unsupported", "always"] | None = None
    affective_dialog: bool | None = None

    def apply(self, family: ModelFamily) -> ModelFamily:
        changes = {
            name: getattr(self, name)
            for name in self.__struct_fields__
            if getattr(self, name) is not None
        }
        return dataclasses.replace(family, **changes)


Pace = Literal["realtime", "fast", "bursty"]


class Behaviour(_Spec, frozen=True):
    pace: Pace = "realtime"
    speed: float = 1.0  # for "realtime": 2.0 streams audio twice as fast as it plays
    chunk_ms: int = 40
    burst_chunks: int = 8  # for "bursty": chunks sent back to back, then a pause
    first_audio_delay_ms: int = 150  # thinking time before the first reply chunk
    transcript_words_per_fragment: int = 2
    connection_lifetime_s: float = 600.0
    go_away_notice_s: float = 60.0
    session_audio_limit_s: float = 900.0
    session_audio_video_limit_s: float = 120.0
    # Served besides the current models (protocol.models.KNOWN_MODELS): names or
    # fnmatch patterns, each with its closest family's rules.
    models: tuple[str, ...] = ()
    # Other names: "plausible" serves gemini-*live* / gemini-*native-audio* names with the
    # closest family's rules and refuses the rest with 1008; "refuse"; "any".
    unknown_models: Literal["plausible", "refuse", "any"] = "plausible"
    families: dict[str, FamilyRules] = msgspec.field(default_factory=dict)  # "2.5", "3.8"...
    voice_activity: bool = True  # voiceActivity when automatic detection hears speech
    transcription_ahead: bool = False  # Vertex: each step's outputTranscription first
    omit_call_ids: bool = False  # Vertex: tool calls without ids (answered by name)
    transparent_on_gemini_api: bool = False  # the SDK refuses it there; so does the server
    session_id_prefix: str = "emu"

    def families_in_force(self) -> dict[str, ModelFamily]:
        """Every model family with this scenario's overrides applied."""
        return {
            name: self.families[name].apply(family) if name in self.families else family
            for name, family in models.FAMILIES.items()
        }


class FaultEntry(_Spec, frozen=True):
    """A fault, as in ``--fault``: ``spec`` is the same text (see emulator.faults)."""

    spec: str


class Scenario(_Spec, frozen=True):
    turns: tuple[Turn, ...] = (
        Turn(
            user="Hello, can you hear me?",
            replies=(Reply(say="Hello! Yes, I can hear you. How can I help you today?"),),
        ),
    )
    default_reply: Reply = Reply(say="I have nothing more to say in this scenario.")
    behaviour: Behaviour = Behaviour()
    faults: tuple[FaultEntry, ...] = ()
    base_dir: str = ""  # where relative audio paths point; set by load_scenario

    def turn(self, index: int) -> Turn:
        """The scripted turn ``index``, or a default one past the end of the script."""
        if index < len(self.turns):
            return self.turns[index]
        return Turn(replies=(self.default_reply,))

    def resolve(self, path: str) -> Path:
        candidate = Path(path)
        if not candidate.is_absolute() and self.base_dir:
            candidate = Path(self.base_dir) / candidate
        return candidate


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario from a ``.json`` or ``.toml`` file.

    Relative audio paths are relative to the file. Raises ``ScenarioError`` for an
    unreadable file, bad syntax, an unknown key, a value of the wrong type or an audio file
    that is not a readable 16-bit WAV, naming the field.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {file}: {exc.strerror}") from exc
    try:
        if file.suffix.lower() == ".toml":
            scenario = msgspec.toml.decode(data, type=Scenario)
        else:
            scenario = msgspec.json.decode(data, type=Scenario)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ScenarioError(f"invalid scenario {file}: {exc}") from exc
    if not 0 < scenario.behaviour.chunk_ms <= 10000 or scenario.behaviour.speed <= 0:
        raise ScenarioError(
            f"invalid scenario {file}: chunk_ms must be 1-10000 (frames stay under 1 MiB) "
            "and speed positive"
        )
    unknown = set(scenario.behaviour.families) - set(models.FAMILIES)
    if unknown:
        raise ScenarioError(
            f"invalid scenario {file}: behaviour.families: no family {sorted(unknown)[0]!r}; "
            f"one of {', '.join(models.FAMILIES)}"
        )
    scenario = msgspec.structs.replace(scenario, base_dir=str(file.parent.resolve()))
    for t, turn in enumerate(scenario.turns):
        for r, reply in enumerate(turn.replies):
            if reply.audio is not None:
                try:
                    read_wav(scenario.resolve(reply.audio))
                except AudioFileError as exc:
                    raise ScenarioError(
                        f"invalid scenario {file}: turns[{t}].replies[{r}].audio: {exc}"
                    ) from exc
    return scenario
