"""A local Gemini Live server that speaks the real wire protocol, for running and testing
without a key or a network. ``python -m emulator`` runs it; ``open_emulator()`` embeds it."""

from emulator.faults import Fault, FaultSpecError, parse_fault
from emulator.scenario import (
    Behaviour,
    CodeSpec,
    FamilyRules,
    Reply,
    Scenario,
    ScenarioError,
    SearchResult,
    SearchSpec,
    ToolCallSpec,
    Turn,
    UrlSpec,
    load_scenario,
)
from emulator.server import Emulator, IoMode, open_emulator

__all__ = [
    "Behaviour",
    "CodeSpec",
    "Emulator",
    "FamilyRules",
    "Fault",
    "FaultSpecError",
    "IoMode",
    "Reply",
    "Scenario",
    "ScenarioError",
    "SearchResult",
    "SearchSpec",
    "ToolCallSpec",
    "Turn",
    "UrlSpec",
    "load_scenario",
    "open_emulator",
    "parse_fault",
]
