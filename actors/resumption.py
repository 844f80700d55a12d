"""Resumption handles kept outside the process, so a conversation survives a restart.

    store = FileHandleStore("session.handle", model="gemini-3.8-live")
    async with model.session(resume=store) as session:   # resumes if the file holds one
        ...                                              # every new handle is saved

The service keeps a session resumable for two hours after its last connection ended
(``HANDLE_LIFETIME``); a handle older than that, or saved for another model (a resume may
change everything but the model), is not offered. A ``HandleStore`` is anything with
``load()`` and ``save(handle)``: a database row, a key-value store. A handle resumes a
conversation: it is kept like a credential (the file is written owner-only, atomically,
and never shown in a repr).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec

HANDLE_LIFETIME = 2 * 3600.0  # seconds a handle stays valid after its session ended
MAX_HANDLE_FILE_BYTES = 64 << 10  # a stored handle file larger than this is not read


class HandleStore(Protocol):
    """Where a session's latest resumption handle is kept. Both calls may block (they
    run in a worker thread)."""

    def load(self) -> str | None:
        """The handle to resume with, or None to start a new session."""
        ...

    def save(self, handle: str) -> None:
        """Keep ``handle`` (the latest resumable one) in place of the last."""
        ...


class _Stored(msgspec.Struct):
    handle: str
    saved_at: float  # wall-clock seconds (time.time())
    model: str | None = None


@dataclass
class FileHandleStore:
    """The latest handle in one JSON file; ``model`` (if given) must match to resume."""

    path: Path | str
    model: str | None = None
    max_age: float = HANDLE_LIFETIME
    clock: Callable[[], float] = field(default=time.time, repr=False)  # wall-clock seconds

    def load(self) -> str | None:
        """The stored handle if it is young enough and for this model; None otherwise
        (also for a missing, oversized or unreadable file: a new session starts)."""
        path = Path(self.path)
        try:
            with path.open("rb") as file:
                data = file.read(MAX_HANDLE_FILE_BYTES + 1)
        except OSError:
            return None
        if len(data) > MAX_HANDLE_FILE_BYTES:
            return None
        try:
            stored = msgspec.json.decode(data, type=_Stored)
        except msgspec.DecodeError:
            return None
        if self.model is not None and stored.model not in (None, self.model):
            return None
        if not 0 <= self._now() - stored.saved_at <= self.max_age:
            return None
        return stored.handle or None

    def save(self, handle: str) -> None:
        """Replace the stored handle, atomically (a crash leaves the old or the new one),
        in a file only its owner may read."""
        path = Path(self.path)
        record = msgspec.json.encode(_Stored(handle, self._now(), self.model))
        descriptor, temporary = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(record)
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def _now(self) -> float:
        return self.clock()
