"""One task that reads many plain TCP sockets: a private, level-triggered epoll (Linux).

Trio's ``wait_readable`` arms a one-shot epoll registration for every wait and disarms it
after every wakeup: two ``epoll_ctl`` calls and a task switch per received message. With
hundreds of sessions each sending 50 messages a second, that is most of the emulator's
CPU. Here every client socket is registered once in a private epoll; trio waits on that
one descriptor, and each wakeup drains every ready socket through its callback. Callbacks
are synchronous and must not block; one that raises loses only its own socket. Where
epoll does not exist (``epoll_available()``), the server takes its portable path instead.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
from collections.abc import Callable

import trio

log = logging.getLogger("emulator")

ReadCallback = Callable[[], None]


def epoll_available() -> bool:
    """Whether this platform has epoll, which ``ReadReactor`` needs (Linux)."""
    return hasattr(select, "epoll")


class ReadReactor:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._callbacks: dict[int, tuple[ReadCallback, Callable[[BaseException], None]]] = {}

    def add(
        self,
        sock: socket.socket,
        on_readable: ReadCallback,
        on_error: Callable[[BaseException], None],
    ) -> None:
        """Call ``on_readable()`` whenever ``sock`` has data (or EOF) until ``remove``.
        If it raises, the socket is removed and ``on_error(exc)`` is called."""
        fd = sock.fileno()
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = (on_readable, on_error)

    def remove(self, sock: socket.socket) -> None:
        """Stop watching ``sock``; call before closing it. Idempotent."""
        fd = sock.fileno()
        if self._callbacks.pop(fd, None) is not None and fd >= 0 and not self._epoll.closed:
            # OSError: already closed, and the kernel dropped it from the epoll set. (A
            # closed epoll, when the reactor stopped first at shutdown, has nothing to drop.)
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)

    async def run(self) -> None:
        """Serve callbacks until cancelled; closes the epoll on the way out."""
        try:
            while True:
                await trio.lowlevel.wait_readable(self._epoll.fileno())
                for fd, _events in self._epoll.poll(0):
                    entry = self._callbacks.get(fd)
                    if entry is None:
                        continue
                    on_readable, on_error = entry
                    try:
                        on_readable()
                    except Exception as exc:
                        log.exception("read callback failed; dropping its connection")
                        self._callbacks.pop(fd, None)
                        with contextlib.suppress(OSError):
                            self._epoll.unregister(fd)
                        on_error(exc)
        finally:
            self._epoll.close()
