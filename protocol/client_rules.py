"""How a client speaks to each Live model family: pure functions over ``protocol.models``.

``protocol.models`` says what each family accepts (the emulator checks setups against it);
this module says what a client should therefore *send*: ``ClientRules.for_model(model,
api)`` gives the rules of one model on one API, and its methods build the wire messages.

- Typed text: on 2.5 a ``clientContent`` user turn with ``turnComplete``; on 3.x
  ``realtimeInput.text`` (Pipecat sends user text that way on every model; LiveKit's users
  met 1007 closes with mid-session ``clientContent`` on 3.1 in March 2026).
- Context (turns appended mid-session): ``clientContent`` with an explicit role on every
  turn (3.x closes 1007 on a role-less turn), ``turnComplete: false``.
- A reply on request: ``clientContent{turnComplete: true}`` (the SDK's own form; verified on
  3.8 by LiveKit's users), plus Pipecat's ``realtimeInput{text: " "}`` nudge on 3.1, where
  Pipecat found turns stall without a realtime input. With instructions: one user turn
  holding them, wrapped as LiveKit wraps them, sent as realtime text on 3.x.
- Initial history (``seed``): on 3.x and the Gemini API, ``historyConfig`` in the setup and
  the turns as one ``clientContent`` ending with ``turnComplete: true`` (history only, no
  reply); elsewhere (2.5, Vertex, which refuses ``historyConfig``) ``turnComplete: false``,
  or ``true`` when a reply is wanted, which 2.5 allows only after a user turn.
- Tool declarations (``declared_behavior``): NON_BLOCKING always written out; BLOCKING
  written out where the family's default is NON_BLOCKING (3.8), left out elsewhere;
  a behavior the family refuses is a ``ModelRuleError``.
- Thinking (``thinking_config``): a budget on 2.5, a level on 3.1 and 3.8 extended
  thinking (LOW when none is given: "the API has no default"), nothing on 3.8.
- ``check_setup`` refuses before connecting what the service would close 1007/1008 for.

A tool call that cannot be answered with a ``toolResponse`` (its session is gone) is
folded into history as text (``folded_call``, ``folded_result``), as Pipecat does:
"Seeding a Gemini Live conversation with tool calls ... fails with a 1007 error."
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from protocol import models, wire
from protocol.errors import GeminiLiveError
from protocol.models import Api, ModelFamily

Behavior = Literal["BLOCKING", "NON_BLOCKING"]
ThinkingLevel = Literal["MINIMAL", "LOW", "MEDIUM", "HIGH", "XHIGH"]

INSTRUCTIONS_TEMPLATE: Final = "<instructions>\n{}\n</instructions>"  # LiveKit's wrapper
NUDGE: Final = " "  # Pipecat's realtime input after a turnComplete on 3.x
DEFAULT_THINKING_LEVEL: Final = "LOW"  # Pipecat's, where a family needs one
RESULT_CHARS: Final = 4000  # a folded tool result is cut to this many characters

# Built-in tools google-genai 3.6.1 refuses on one API (wire.Tool field -> the API it needs).
_TOOL_API: Final[dict[str, Api]] = {
    "file_search": "gemini",
    "mcp_servers": "gemini",
    "retrieval": "vertex",
    "enterprise_web_search": "vertex",
    "parallel_ai_search": "vertex",
    "exa_ai_search": "vertex",
}


class ModelRuleError(GeminiLiveError, ValueError):
    """A configuration the model (its family, on its API) refuses; raised before anything
    is sent. The message names the model and the option."""


@dataclass(frozen=True)
class ClientRules:
    """How to speak to ``model`` on ``api``, by its family's rules."""

    model: str  # the bare model id
    api: Api
    family: ModelFamily
    known: bool  # the family comes from the table; False: guessed from the name

    @classmethod
    def for_model(
        cls, model: str, api: Api = "gemini", family: ModelFamily | str | None = None
    ) -> ClientRules:
        """The rules of ``model`` on ``api``: its family from ``protocol.models``, the
        closest family for a name the table does not know, or ``family`` when given (a
        name such as "3.8", or a ``ModelFamily`` with rules of one's own)."""
        name = models.model_id(model)
        if isinstance(family, str):
            if family not in models.FAMILIES:
                raise ModelRuleError(
                    f"no model family {family!r}; one of {', '.join(models.FAMILIES)}"
                )
            family = models.FAMILIES[family]
        if family is not None:
            return cls(name, api, family, known=True)
        found = models.family_of(name, api)
        if found is not None:
            return cls(name, api, found, known=True)
        return cls(name, api, models.closest_family(name), known=False)

    # --- what the family is ---------------------------------------------------------

    @property
    def is_3x(self) -> bool:
        """A 3.x family: roles required, text as realtime input."""
        return self.family.content_role_required

    @property
    def uses_history_config(self) -> bool:
        """Initial history goes in with ``historyConfig`` (3.x on the Gemini API)."""
        return self.family.history_config and self.api == "gemini"

    @property
    def nudges(self) -> bool:
        """A reply request is followed by a blank realtime text (3.1, as Pipecat found)."""
        return self.family.name == "3.1"

    # --- messages -------------------------------------------------------------------

    def user_text(self, text: str) -> wire.ClientMessage:
        """A typed user turn that asks for a reply."""
        if self.is_3x:
            return wire.RealtimeInput(text=text)
        return wire.ClientContent(turns=[_content("user", text)], turn_complete=True)

    def context(self, turns: Sequence[tuple[str, str]]) -> wire.ClientContent:
        """Turns (role "user" or "model", text) appended to the history, no reply."""
        return wire.ClientContent(
            turns=[_content(role, text) for role, text in turns], turn_complete=False
        )

    def reply_request(self, instructions: str | None = None) -> list[wire.ClientMessage]:
        """Ask for a reply now, following ``instructions`` if given."""
        if instructions is not None:
            wrapped = INSTRUCTIONS_TEMPLATE.format(instructions)
            if self.is_3x:
                return [wire.RealtimeInput(text=wrapped)]
            return [wire.ClientContent(turns=[_content("user", wrapped)], turn_complete=True)]
        request: list[wire.ClientMessage] = [wire.ClientContent(turn_complete=True)]
        if self.nudges:
            request.append(wire.RealtimeInput(text=NUDGE))
        return request

    def seed(
        self, turns: Sequence[wire.Content], *, reply_wanted: bool = False
    ) -> list[wire.ClientMessage]:
        """The messages that give a new session its history, sent first on the connection
        (with ``history_config()`` in its setup); with ``reply_wanted`` the model answers
        its last user turn (a tool result folded in after a session was lost)."""
        if not turns:
            return self.reply_request() if reply_wanted else []
        if self.uses_history_config:
            seed: list[wire.ClientMessage] = [
                wire.ClientContent(turns=list(turns), turn_complete=True)
            ]
            return seed + self.reply_request() if reply_wanted else seed
        wants = reply_wanted and (
            not self.family.seed_ends_with_user or turns[-1].role in (None, "user")
        )
        seed = [wire.ClientContent(turns=list(turns), turn_complete=wants)]
        if wants and self.nudges:
            seed.append(wire.RealtimeInput(text=NUDGE))
        return seed

    def history_config(self, seeding: bool) -> wire.HistoryConfig | None:
        """The setup's ``historyConfig`` for a connection that will (or will not) be
        given its history first."""
        if seeding and self.uses_history_config:
            return wire.HistoryConfig(initial_history_in_client_content=True)
        return None

    # --- tools and thinking ---------------------------------------------------------

    def effective_behavior(self, tool: str, behavior: Behavior | None) -> Behavior:
        """How calls of ``tool`` run: ``behavior`` as asked, or when none was asked the
        blocking behavior where the family has it (NON_BLOCKING on 3.8 extended
        thinking, which runs nothing else). Raises ``ModelRuleError`` for a behavior the
        family refuses."""
        accepted = self.family.tool_behaviors
        if behavior is None:
            return "BLOCKING" if "BLOCKING" in accepted else "NON_BLOCKING"
        if behavior not in accepted:
            runs = "BLOCKING" if "BLOCKING" in accepted else "NON_BLOCKING"
            raise ModelRuleError(
                f"tool {tool!r} is declared {behavior}, which {self.model} (the "
                f"{self.family.name} family) refuses: it runs {runs} tools only"
            )
        return behavior

    def declared_behavior(self, behavior: Behavior) -> Behavior | None:
        """The ``behavior`` written in a function declaration for an effective one."""
        if behavior == "NON_BLOCKING":
            return "NON_BLOCKING"
        return "BLOCKING" if self.family.default_tool_behavior == "NON_BLOCKING" else None

    def thinking_config(
        self,
        *,
        level: ThinkingLevel | None = None,
        budget: int | None = None,
        include_thoughts: bool | None = None,
    ) -> wire.ThinkingConfig | None:
        """The setup's ``thinkingConfig``. Raises ``ModelRuleError`` for a budget where
        the family takes a level, the reverse, any thinking on 3.8, or a level the family
        refuses (no current family is known to take XHIGH)."""
        kind = self.family.thinking
        if kind == "none":
            if level is not None or budget is not None:
                raise ModelRuleError(
                    f"{self.model} takes no thinking configuration (thinking_level is not "
                    "supported by gemini-3.8-live); use gemini-3.8-live-extended-thinking"
                )
            return _thinking(None, None, include_thoughts)
        if kind == "budget":
            if level is not None:
                raise ModelRuleError(
                    f"{self.model} takes thinking_budget, not thinking_level ({level})"
                )
            return _thinking(None, budget, include_thoughts)
        if budget is not None:
            raise ModelRuleError(f"{self.model} takes thinking_level, not thinking_budget")
        if level is None and kind == "level-required":
            level = DEFAULT_THINKING_LEVEL
        if level is not None and level not in self.family.thinking_levels:
            accepted = sorted(self.family.thinking_levels - {"THINKING_LEVEL_UNSPECIFIED"})
            raise ModelRuleError(
                f"thinking_level {level} is not supported by {self.model}; "
                f"it takes {', '.join(accepted)}"
            )
        return _thinking(level, None, include_thoughts)

    def check_setup(self, setup: wire.Setup) -> None:
        """Raise ``ModelRuleError`` for a setup the service would refuse: the family's
        rules (``protocol.models.setup_problem``), proactive video (it needs proactive
        audio), and what google-genai refuses on this API (``explicitVadSignal``,
        transparent resumption and some built-in tools; multi-speaker voices on Live)."""
        problem = models.setup_problem(setup, self.family, self.api)
        if problem is not None:
            raise ModelRuleError(f"{self.model}: {problem.reason} ({problem.field})")
        proactivity = setup.proactivity
        if proactivity is not None and proactivity.proactive_video:
            if self.family.proactive_audio == "unsupported":
                raise ModelRuleError(f"{self.model} refuses proactivity (proactive_video)")
            if self.family.proactive_audio == "optional" and not proactivity.proactive_audio:
                raise ModelRuleError("proactive_video needs proactive_audio=True")
        if self.api == "gemini" and setup.explicit_vad_signal is not None:
            raise ModelRuleError("explicit_vad_signal is supported on Vertex AI only")
        speech = (setup.generation_config or wire.GenerationConfig()).speech_config
        if speech is not None and speech.multi_speaker_voice_config is not None:
            raise ModelRuleError(
                "multi-speaker voices are not supported by the Live API (google-genai "
                "3.6.1: multi_speaker_voice_config is not supported in the live API)"
            )
        for tool in setup.tools or ():
            for field, api in _TOOL_API.items():
                if getattr(tool, field) is not None and api != self.api:
                    where = "the Gemini API" if api == "gemini" else "Vertex AI"
                    raise ModelRuleError(f"the {_camel(field)} tool is supported on {where} only")


# --- tool calls folded into history as text -------------------------------------------------


def folded_call(name: str, args: dict[str, Any]) -> wire.Content:
    """A tool call the model made, as history text (Pipecat's words)."""
    return _content("model", f"[Called function {name} with args {_json(args)}]")


def folded_result(name: str, output: Any = None, error: str | None = None) -> wire.Content:
    """A tool call's result, as history text: a user turn the model can answer."""
    said = f"failed: {error}" if error is not None else f"returned {_json(output)}"
    text = f"[Function {name} {said}]"
    if len(text) > RESULT_CHARS:
        text = text[: RESULT_CHARS - 4] + "...]"
    return _content("user", text)


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _content(role: str, text: str) -> wire.Content:
    return wire.Content(role=role, parts=[wire.Part(text=text)])


def _thinking(
    level: str | None, budget: int | None, include_thoughts: bool | None
) -> wire.ThinkingConfig | None:
    if level is None and budget is None and include_thoughts is None:
        return None
    return wire.ThinkingConfig(
        thinking_level=level,  # type: ignore[arg-type]  # checked against the family
        thinking_budget=budget,
        include_thoughts=include_thoughts,
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)
