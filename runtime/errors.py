"""The library's error root, and the one place trio's exception groups are unwrapped.

``GeminiLiveError`` is the base of every error the library raises on purpose (the typed
errors of ``actors``, and ``SupervisorGaveUp`` here in the runtime), so an application can
catch them all in one ``except``. Bugs stay themselves (``TypeError``, ``AssertionError``...).

Trio reports what failed inside a nursery as an ``ExceptionGroup``, even when one thing
failed. ``unwrap`` turns such a group back into the one error it stands for; every place
that hands an error to an application (the session facade, the supervisor, the
scripts) goes through it, so they all agree on what "one error" means.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

from protocol.errors import GeminiLiveError

__all__ = ["GeminiLiveError", "describe", "leaves", "unwrap", "unwrapping"]


def leaves(error: BaseException) -> list[BaseException]:
    """Every non-group exception inside ``error`` (itself if it is not a group), in order."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def unwrap(error: BaseException) -> BaseException:
    """The one error ``error`` stands for, or ``error`` itself when it is not one error.

    - not a group: itself;
    - a ``KeyboardInterrupt`` inside: that (the user asked to stop, whatever else failed);
    - exactly one leaf that is not ``trio.Cancelled``: that leaf (the others were
      cancelled because of it);
    - otherwise (only cancellations, which their cancel scope must still catch, or
      several real failures): the group, unchanged.
    """
    if not isinstance(error, BaseExceptionGroup):
        return error
    found = leaves(error)
    for leaf in found:
        if isinstance(leaf, KeyboardInterrupt):
            return leaf
    real = [leaf for leaf in found if not isinstance(leaf, trio.Cancelled)]
    return real[0] if len(real) == 1 else error


@contextmanager
def unwrapping() -> Iterator[None]:
    """Re-raise an exception group escaping the block as the one error it stands for
    (``unwrap``), with its cause; a group that is not one error goes on unchanged."""
    try:
        yield
    except BaseExceptionGroup as group:
        error = unwrap(group)
        if error is group:
            raise
        raise error from error.__cause__


def describe(error: BaseException) -> str:
    """One line for ``error``: its message, or for a group each leaf with its type."""
    if not isinstance(error, BaseExceptionGroup):
        return str(error)
    return "; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in leaves(error))
