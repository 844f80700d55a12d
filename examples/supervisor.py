"""The main job (`make run`): a whole voice conversation through the actor pipeline.

Not built yet: it needs the emulator (issue 3), the session core (issue 4), the media
actors (issue 5) and the public API (issue 6). Until then it says so and exits non-zero.
"""

from __future__ import annotations

import sys


def main() -> int:
    print(
        "examples/supervisor.py: the conversation pipeline is not built yet "
        "(issues 3-6); `make test` and `make bench` work today.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
