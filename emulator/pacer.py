"""The emulator paces reply chunks with the library's shared-timer pacer."""

from actors.pacer import Pacer

__all__ = ["Pacer"]
