"""The layers import downwards only: protocol <- runtime <- actors, emulator.

Checked on the source (every import statement, deferred ones included), so an import
hidden inside a function cannot slip a dependency past the rule.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What each package may import from this project (itself always).
ALLOWED: dict[str, set[str]] = {
    "protocol": set(),
    "runtime": {"protocol"},
    "actors": {"protocol", "runtime"},
    "emulator": {"protocol", "runtime"},
    "web": {"protocol", "runtime", "actors", "emulator"},
}
# Third-party packages that must not appear in a layer (protocol is sans-IO).
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "protocol": {"trio", "trio_websocket", "socket", "ssl"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down_only(package: str) -> None:
    own = set(ALLOWED)
    bad: list[str] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        imported = _imports(path)
        for name in sorted(imported & own - ALLOWED[package] - {package}):
            bad.append(f"{path.relative_to(ROOT)} imports {name}")
        for name in sorted(imported & FORBIDDEN_THIRD_PARTY.get(package, set())):
            bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_importing_the_emulator_loads_no_client_code() -> None:
    probe = (
        "import sys, emulator, emulator.__main__\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'actors')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == ""
