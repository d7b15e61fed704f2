"""One deadline for a whole URL fetch: redirects, DNS and slow bodies included.

One job: ``Deadline`` says how long is left (and words the timeout error); ``Watchdog``
shuts the connection when it passes, so a server trickling bytes cannot outlive it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from pipeline.images import InputError


class Deadline:
    def __init__(self, seconds: float, field: str) -> None:
        self.seconds = seconds
        self.field = field
        self.end = time.monotonic() + seconds
        self.expired = False

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.error()
        return left

    def error(self) -> InputError:
        return InputError(
            f"{self.field}: the download took longer than {self.seconds:g} s; "
            "use a faster host or send the image as base64"
        )



class Watchdog:
    """Shut the connection when the deadline passes, so no slow trickle can outlive it.

    It holds a duplicate of the socket's descriptor: shutting that down ends the connection
    for every descriptor, also after the original was handed to TLS (which detaches it).
    """

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._dup = sock.dup()
        self._deadline = deadline
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(deadline.end - time.monotonic(), 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._dup.fileno() < 0:
                return
            self._deadline.expired = True
            with contextlib.suppress(OSError):
                self._dup.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._dup.close()
