"""Every code block in the README runs as written (issue 14).

Python blocks run as scripts, each in its own process, from a scratch directory that has
the checkout's ``examples/`` (the blocks use its assets) with no API key: they talk to
the emulator. TOML blocks are emulator scenarios and must load. Shell blocks (``sh``) and
plain blocks (diagrams, sample output) are not run. A Python block that cannot run here
says so on the line before it: ``<!-- not run: WHY -->`` (a real key, another venv).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulator import load_scenario

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->")


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # where the block starts in the README
    not_run: str | None  # the reason given, if it is not to be run


def blocks(text: str) -> list[Block]:
    found: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = re.fullmatch(r"```(\S*)\s*", lines[index])
        if fence is None:
            index += 1
            continue
        end = lines.index("```", index + 1)
        marker = NOT_RUN.search(lines[index - 1]) if index else None
        code = "\n".join(lines[index + 1 : end]) + "\n"
        found.append(Block(fence.group(1), code, index + 1, marker.group(1) if marker else None))
        index = end + 1
    return found


ALL = blocks(README.read_text())
PYTHON = [b for b in ALL if b.language == "python"]
TOML = [b for b in ALL if b.language == "toml"]


def test_every_block_is_known_to_the_test() -> None:
    assert {b.language for b in ALL} <= {"python", "toml", "sh", ""}
    assert len(PYTHON) >= 5
    assert TOML


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: f"line-{b.line}")
def test_the_python_blocks_run_as_written(block: Block, tmp_path: Path) -> None:
    if block.not_run is not None:
        pytest.skip(f"README line {block.line}: {block.not_run}")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    script = tmp_path / "block.py"
    script.write_text(block.code)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},  # no key: the emulator
    )
    assert result.returncode == 0, f"README line {block.line}:\n{result.stderr}"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("block", TOML, ids=lambda b: f"line-{b.line}")
def test_the_scenario_blocks_load(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(block.code)
    load_scenario(path)  # raises ScenarioError naming the field


def test_the_three_end_states_script_prints_them() -> None:
    # The "Ending a session" script: one line per end state, with its type.
    script = next(b for b in PYTHON if "async def ask(" in b.code)
    result = subprocess.run(
        [sys.executable, "-c", script.code],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "normal end",
        "fatal: ModelNotSupported",
        "fatal: ConnectFailed",
        "cancelled",
    ]
