"""Scenarios: what the emulator's "model" says, and how the emulated service behaves.

A scenario is a JSON or TOML file (format in the README). Unknown keys are errors, so a
typo does not silently fall back to a default. Without a file, ``Scenario()`` gives a
sensible default conversation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec

from emulator.audio import AudioFileError, read_wav

DEFAULT_MODELS = (
    "gemini-2.5-flash-native-audio-preview-12-2025",
    "gemini-2.5-flash-native-audio-preview-09-2025",
    "gemini-3.1-flash-live-preview",
    "gemini-live-2.5-flash-native-audio",
    "gemini-live-2.5-flash-preview",
    "gemini-2.0-flash-live-001",
    "gemini-2.0-flash-exp",
)


class ScenarioError(ValueError):
    """The scenario file is unreadable or invalid; the message names the field."""


class _Spec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class ToolCallSpec(_Spec, frozen=True):
    name: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)


class Reply(_Spec, frozen=True):
    """One step of a reply: speech (``say``, optionally from a WAV file) or tool calls.

    Tool calls listed together are sent in one ``toolCall`` message (parallel calls); the
    reply continues when every one has its response.
    """

    say: str | None = None
    audio: str | None = None
    tool_calls: tuple[ToolCallSpec, ...] = ()


class Turn(_Spec, frozen=True):
    """One exchange: what the user is taken to have said, and the model's reply steps."""

    user: str = "(the user spoke)"
    replies: tuple[Reply, ...] = (Reply(say="This is the Gemini Live emulator speaking."),)


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
    models: tuple[str, ...] = DEFAULT_MODELS  # an empty list allows any model
    session_id_prefix: str = "emu"


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
