"""The Live models and their families: what each accepts, as the service has it today.

One table of data (``FAMILIES``), no rule scattered in code: a server (the emulator)
validates a setup and the session's messages against the family of the model it names,
and a client may read the same table to speak to each model the way it accepts.

Sources: LiveKit's plugin 1.8.9, Pipecat 1.14.0, google-genai 3.6.1 and the model pages of
the Gemini API and Vertex AI docs (September 2026). Where they disagree, the newest
official docs win; what none of them settles is marked "doubtful" below, and a server
should let its user override it (the emulator's scenario does, per family).

Names: ``KNOWN_MODELS`` lists the current names per API. ``RETIRED_MODELS`` are refused
by the service (1008). ``family_of`` gives a known name's family; ``closest_family``
guesses one for a name the table does not know (a new ``gemini-4-live``, a dated preview)
from its version, as Pipecat does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from protocol import wire

Api = Literal["gemini", "vertex"]
FamilyName = Literal["2.5", "3.1", "3.8", "3.8-thinking"]

INVALID_ARGUMENT: Final = "Request contains an invalid argument."  # the service's 1007 reason


@dataclass(frozen=True)
class ModelFamily:
    """What the models of one family accept and how they behave."""

    name: FamilyName
    # clientContent turns must say role "user" or "model" (3.x closes 1007 otherwise).
    content_role_required: bool
    # historyConfig.initialHistoryInClientContent is honoured: clientContent up to the first
    # turnComplete (or the first realtime input) is history and starts no reply.
    history_config: bool
    # A clientContent with turnComplete whose last turn is the model's is refused (1007):
    # Pipecat: "Gemini 2.5's send_client_content requires the seed's final turn to be a
    # user turn".
    seed_ends_with_user: bool
    # A lone "." user turn (LiveKit's generate_reply placeholder) is answered with an empty
    # turn (LiveKit: 3.1/3.8 "answer that placeholder with an empty turn").
    placeholder_gets_empty_turn: bool
    # thinkingConfig: "budget" (thinkingBudget), "level" (thinkingLevel, optional),
    # "level-required" (thinkingLevel, a setup without one is refused), "none" (refused).
    thinking: Literal["budget", "level", "level-required", "none"]
    thinking_levels: frozenset[str]  # the thinkingLevels it accepts
    tool_behaviors: frozenset[str]  # declared function behaviors it accepts
    default_tool_behavior: Literal["BLOCKING", "NON_BLOCKING"]
    # interactionStatus sent with every turnComplete (3.8 thinking; doubtful for plain 3.8).
    interaction_status: bool
    # proactivity.proactiveAudio: "optional", "unsupported" (any proactivity refused), or
    # "always" (on for good: proactiveAudio false is refused).
    proactive_audio: Literal["optional", "unsupported", "always"]
    affective_dialog: bool  # enableAffectiveDialog accepted


_ALL_BEHAVIORS: Final = frozenset({"UNSPECIFIED", "BLOCKING", "NON_BLOCKING"})
_LEVELS_31: Final = frozenset({"THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH"})
_LEVELS_THINKING: Final = frozenset({"LOW", "MEDIUM", "HIGH"})

FAMILIES: Final[dict[str, ModelFamily]] = {
    family.name: family
    for family in (
        ModelFamily(
            name="2.5",
            content_role_required=False,
            history_config=False,  # accepted and ignored: Pipecat's 2.5 seed still replies
            seed_ends_with_user=True,
            placeholder_gets_empty_turn=False,
            thinking="budget",
            thinking_levels=frozenset(),
            tool_behaviors=_ALL_BEHAVIORS,
            default_tool_behavior="BLOCKING",
            interaction_status=False,
            proactive_audio="optional",
            affective_dialog=True,
        ),
        ModelFamily(
            name="3.1",
            content_role_required=True,
            history_config=True,
            seed_ends_with_user=False,
            placeholder_gets_empty_turn=True,
            thinking="level",  # default minimal
            thinking_levels=_LEVELS_31,
            tool_behaviors=frozenset({"UNSPECIFIED", "BLOCKING"}),  # "synchronous only"
            default_tool_behavior="BLOCKING",
            interaction_status=False,
            proactive_audio="unsupported",
            affective_dialog=False,
        ),
        ModelFamily(
            name="3.8",
            content_role_required=True,
            history_config=True,
            seed_ends_with_user=False,
            placeholder_gets_empty_turn=True,
            thinking="none",  # "thinking_level is not supported by gemini-3.8-live"
            thinking_levels=frozenset(),
            tool_behaviors=_ALL_BEHAVIORS,  # BLOCKING kept for back-compat
            default_tool_behavior="NON_BLOCKING",
            interaction_status=False,  # doubtful: the SDK says "always sent"
            proactive_audio="always",
            affective_dialog=False,  # removed from the Gemini API (Vertex: on by default)
        ),
        ModelFamily(
            name="3.8-thinking",
            content_role_required=True,
            history_config=True,
            seed_ends_with_user=False,
            placeholder_gets_empty_turn=True,
            thinking="level-required",  # "the API has no default"; MINIMAL refused
            thinking_levels=_LEVELS_THINKING,
            tool_behaviors=frozenset({"UNSPECIFIED", "NON_BLOCKING"}),  # "async only"
            default_tool_behavior="NON_BLOCKING",
            interaction_status=True,
            proactive_audio="always",
            affective_dialog=False,
        ),
    )
}

KNOWN_MODELS: Final[dict[str, tuple[FamilyName, frozenset[Api]]]] = {
    "gemini-3.8-live": ("3.8", frozenset({"gemini", "vertex"})),
    "gemini-3.8-live-extended-thinking": ("3.8-thinking", frozenset({"gemini"})),
    "gemini-3.1-flash-live-preview": ("3.1", frozenset({"gemini"})),
    "gemini-2.5-flash-native-audio-preview-12-2025": ("2.5", frozenset({"gemini"})),
    "gemini-2.5-flash-native-audio-preview-09-2025": ("2.5", frozenset({"gemini"})),
    "gemini-2.5-flash-native-audio-latest": ("2.5", frozenset({"gemini"})),
    "gemini-live-2.5-flash-native-audio": ("2.5", frozenset({"vertex"})),
}
"""Current Live models: name -> (family, the APIs that serve it)."""

RETIRED_MODELS: Final = frozenset(
    {"gemini-live-2.5-flash-preview", "gemini-2.0-flash-live-001", "gemini-2.0-flash-exp"}
)

_VERSION: Final = re.compile(r"gemini(?:-[a-z]+)*-(\d+)(?:\.(\d+))?")


def model_id(model: str) -> str:
    """The bare model name in any of its wire forms (``models/X``,
    ``projects/P/locations/L/publishers/google/models/X``, ``publishers/google/models/X``)."""
    return model.rsplit("/", 1)[-1]


def family_of(model: str, api: Api) -> ModelFamily | None:
    """The family of a current model served on ``api``; None for any other name."""
    known = KNOWN_MODELS.get(model_id(model))
    if known is None or api not in known[1]:
        return None
    return FAMILIES[known[0]]


def closest_family(model: str) -> ModelFamily:
    """The family whose rules fit an unknown name best: by its version (2.x and older:
    2.5; 3.0-3.7: 3.1; 3.8 and newer: 3.8, or 3.8-thinking when it says "thinking")."""
    name = model_id(model)
    match = _VERSION.search(name)
    version = (int(match.group(1)), int(match.group(2) or 0)) if match else (2, 5)
    if version < (3, 0):
        return FAMILIES["2.5"]
    if version < (3, 8):
        return FAMILIES["3.1"]
    return FAMILIES["3.8-thinking" if "thinking" in name else "3.8"]


def looks_like_live_model(model: str) -> bool:
    """Whether an unknown name is plausibly a Live model (``gemini-*live*`` or
    ``gemini-*native-audio*``), as opposed to a typo or a text model."""
    name = model_id(model)
    return name.startswith("gemini-") and ("live" in name or "native-audio" in name)


@dataclass(frozen=True)
class SetupProblem:
    """Why the service refuses a setup: the close code, its reason and the field."""

    code: int
    reason: str
    field: str


def setup_problem(setup: wire.Setup, family: ModelFamily, api: Api) -> SetupProblem | None:
    """The first rule of ``family`` (and of ``api``) that ``setup`` breaks, or None.

    Checked: thinking (budget or level, the levels allowed, a level required), declared
    function behaviors, proactivity, affective dialog, and historyConfig on Vertex. The
    reasons start with the service's own words for a 1007 where it has any.
    """
    model = model_id(setup.model)
    generation = setup.generation_config or wire.GenerationConfig()
    thinking = generation.thinking_config
    level = thinking.thinking_level if thinking is not None else None
    budget = thinking.thinking_budget if thinking is not None else None
    where = "setup.generationConfig.thinkingConfig"
    if family.thinking == "none" and level is not None:
        return SetupProblem(
            1007,
            f"thinking_level is not supported by {model[:60]}. Omit thinking_level (or "
            "thinking_config) in the session setup.",
            f"{where}.thinkingLevel",
        )
    if family.thinking == "none" and budget is not None:
        return _invalid(f"{model[:60]} does not take thinkingBudget", f"{where}.thinkingBudget")
    if family.thinking == "budget" and level is not None:
        return _invalid(f"{model[:60]} takes thinkingBudget, not thinkingLevel", where)
    if family.thinking in ("level", "level-required") and budget is not None:
        return _invalid(f"{model[:60]} takes thinkingLevel, not thinkingBudget", where)
    if family.thinking == "level-required" and level is None:
        return _invalid(f"{model[:60]} needs a thinkingLevel", f"{where}.thinkingLevel")
    if level is not None and level not in family.thinking_levels:
        return _invalid(f"thinkingLevel {level} is not supported by {model[:60]}", where)
    for t, tool in enumerate(setup.tools or ()):
        for d, declaration in enumerate(tool.function_declarations or ()):
            behavior = declaration.behavior
            if behavior is not None and behavior not in family.tool_behaviors:
                return _invalid(
                    f"behavior {behavior} is not supported by {model[:60]}",
                    f"setup.tools[{t}].functionDeclarations[{d}].behavior",
                )
    proactivity = setup.proactivity
    if proactivity is not None and (
        (family.proactive_audio == "unsupported" and proactivity.proactive_audio is not None)
        or (family.proactive_audio == "always" and proactivity.proactive_audio is False)
    ):
        return _invalid(
            f"proactive audio cannot be configured on {model[:60]}",
            "setup.proactivity.proactiveAudio",
        )
    if generation.enable_affective_dialog and not family.affective_dialog:
        return _invalid(
            f"affective dialog is not supported by {model[:60]}",
            "setup.generationConfig.enableAffectiveDialog",
        )
    if api == "vertex" and setup.history_config is not None:
        return _invalid("historyConfig is not supported on Vertex AI", "setup.historyConfig")
    return None


def _invalid(detail: str, field: str) -> SetupProblem:
    return SetupProblem(1007, f"{INVALID_ARGUMENT} {detail}", field)
