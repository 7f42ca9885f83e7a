"""systemd's notify protocol: READY=1 once serving, WATCHDOG=1 from the loop that must stay alive.

With `Type=notify` and `WatchdogSec=` in the unit, systemd considers the service started only when
it says READY=1 (after its first broker connection), and kills and restarts it when WATCHDOG=1 stops
coming: a wedged loop (a deadlock, a C call that never returns) is restarted like a crash. Without
`$NOTIFY_SOCKET` (started by hand, in tests, under another supervisor) every call does nothing.

Written against the documented protocol (sd_notify(3): one datagram of newline-separated
assignments to the AF_UNIX socket named by `$NOTIFY_SOCKET`, `@` standing for the abstract
namespace) rather than a library: the Python bindings (`systemd-python`) need libsystemd headers
to build on a Pi, and the pure-Python `sdnotify` package has had no release since 2017.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Optional

log = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to systemd; `watchdog()` rate-limits itself to half of `WatchdogSec=`."""

    def __init__(self, env: Optional[dict[str, str]] = None) -> None:
        env = dict(os.environ) if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self.address: Optional[str] = ("\0" + path[1:]) if path.startswith("@") else (path or None)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        owned = not pid or pid == str(os.getpid())
        self.watchdog_s: Optional[float] = int(usec) / 1e6 if usec.isdigit() and owned else None
        self._last_ping = 0.0
        self.ready_sent = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """One datagram; False (and a debug line) if it could not be sent. Never raises."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall("\n".join(assignments).encode())
            return True
        except OSError as exc:
            log.debug("sd_notify %s failed: %s", assignments, exc)
            return False

    def ready(self, status: str = "") -> None:
        if not self.ready_sent:
            self.ready_sent = self.send("READY=1", *((f"STATUS={status}",) if status else ()))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        """Call from the loop that must stay alive, as often as convenient."""
        if self.watchdog_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_s / 2:
            self._last_ping = now
            self.send("WATCHDOG=1")
