"""systemd's notify protocol, spoken directly (SPEC §8 "systemd"): ``READY=1``, ``STATUS=``,
``WATCHDOG=1``, ``RELOADING=1``, ``STOPPING=1``.

The protocol is one datagram of ``KEY=VALUE`` lines sent to the ``AF_UNIX`` socket named by
``NOTIFY_SOCKET`` (see sd_notify(3)); it is small enough that a library (and its C dependency)
buys nothing. The same daemon runs with no systemd around, so every call is a no-op when
``NOTIFY_SOCKET`` is unset, and a failed send never raises: a lost status line must not take the
service down — if the messages really matter (``Type=notify`` waiting for ``READY=1``, the
watchdog), systemd itself notices their absence and says so in the journal.

Only the edge reads the environment: :meth:`Notifier.from_env` is called once by ``flowd serve``
and the resulting value is passed on.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("flowd.systemd")

SEND_TIMEOUT_S = 2.0
"""A send waits at most this long for room in the receiver's queue, so a stalled PID 1 can never
hang the daemon's watchdog timer or its shutdown."""

_KEY = re.compile(r"[A-Z][A-Z0-9_]*")


@dataclass
class _Warned:
    """Whether this notifier already logged a failed send: a dead socket stays dead, and a warning
    every 15 s for the life of the process would bury the rest of the journal."""

    done: bool = False


@dataclass(frozen=True)
class Notifier:
    """Where and whether to send systemd notifications, read once from the environment.

    ``address`` is ``None`` (notifications off), a filesystem path, or an abstract socket name
    starting with a NUL byte (``NOTIFY_SOCKET=@name``). ``watchdog_usec`` is systemd's
    ``WATCHDOG_USEC`` (the whole timeout), ``watchdog_pid`` its ``WATCHDOG_PID`` (``None`` when
    unset, ``-1`` when unparsable: then the watchdog applies to no process).

    The value is immutable apart from the warn-once flag. Each call opens its own socket, so one
    notifier may be shared by threads (a watchdog timer and the main thread) without a lock.
    """

    address: str | None = None
    watchdog_usec: int | None = None
    watchdog_pid: int | None = None
    _warned: _Warned = field(default_factory=_Warned, compare=False, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """The notifier systemd asked for in ``environ``.

        ``NOTIFY_SOCKET`` unset or empty: a disabled notifier. An address that is neither a path
        (``/…``) nor abstract (``@…``) — e.g. ``vsock:`` for VMs — is logged and disabled, as
        sd_notify(3) does. ``WATCHDOG_USEC`` that is not a positive integer is ignored.
        """
        raw = environ.get("NOTIFY_SOCKET", "")
        address: str | None = None
        if raw.startswith("/"):
            address = raw
        elif raw.startswith("@") and len(raw) > 1:
            address = "\0" + raw[1:]  # Linux abstract namespace: a leading NUL, not a file
        elif raw:
            log.warning("sd_notify_unsupported_socket", notify_socket=raw)
        return cls(
            address=address,
            watchdog_usec=_positive_int(environ.get("WATCHDOG_USEC")),
            watchdog_pid=_pid(environ.get("WATCHDOG_PID")),
        )

    @property
    def enabled(self) -> bool:
        """Whether notifications are sent at all (``NOTIFY_SOCKET`` was usable)."""
        return self.address is not None

    @property
    def watchdog_applies(self) -> bool:
        """Whether the watchdog is this process's: ``WATCHDOG_PID`` unset or equal to our pid.

        Checked at each call, not once: a forked child holding a copy of the notifier, or a child
        that inherited the environment of a watched parent, must not keep the parent's watchdog fed.
        """
        return self.enabled and self.watchdog_pid in (None, os.getpid())

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to call :meth:`watchdog`: half of ``WATCHDOG_USEC`` (sd_watchdog_enabled(3)
        advises pinging at half the timeout, so one late tick is not fatal), in seconds; ``None``
        when no watchdog applies to this process."""
        if self.watchdog_usec is None or not self.watchdog_applies:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> None:
        """``READY=1``: start-up is finished and the service serves (``Type=notify`` waits for it;
        also the end of a reload). ``status`` adds a ``STATUS=`` line in the same datagram."""
        if status is None:
            self.send(READY=1)
        else:
            self.send(READY=1, STATUS=status)

    def reloading(self) -> None:
        """``RELOADING=1`` with ``MONOTONIC_USEC``: a configuration reload has begun; send
        :meth:`ready` when it is done.

        systemd ≥ 253 requires ``MONOTONIC_USEC`` (``CLOCK_MONOTONIC`` now, in µs) beside
        ``RELOADING=1`` for ``Type=notify-reload``, to tell this reload from an older one;
        ``Type=notify`` and older systemd ignore the extra field.
        """
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(RELOADING=1, MONOTONIC_USEC=now_usec)

    def stopping(self) -> None:
        """``STOPPING=1``: shutdown has begun (the unit shows "deactivating" while work drains)."""
        self.send(STOPPING=1)

    def status(self, text: str) -> None:
        """``STATUS=text``: one free-form line shown by ``systemctl status``."""
        self.send(STATUS=text)

    def watchdog(self) -> None:
        """``WATCHDOG=1``: a keep-alive ping. A no-op when ``WATCHDOG_PID`` names another process
        (see :attr:`watchdog_applies`); whether to ping on a timer is :attr:`watchdog_interval_s`."""
        if self.watchdog_applies:
            self.send(WATCHDOG=1)

    def send(self, **fields: str | int) -> None:
        """Send ``fields`` as one datagram of ``KEY=VALUE`` lines (``bool`` as ``1``/``0``).

        Keys must be upper-case protocol names (``ValueError`` otherwise: a programming error,
        unlike a failed send). Line breaks in values become spaces, so a status text can never
        smuggle in a line such as ``READY=1``. Send errors are logged once and never raised.
        """
        if self.address is None or not fields:
            return
        lines = []
        for key, value in fields.items():
            if not _KEY.fullmatch(key):
                raise ValueError(f"{key!r} is not an sd_notify field name (A-Z, 0-9, _)")
            text = str(int(value)) if isinstance(value, bool) else str(value)
            lines.append(f"{key}={' '.join(text.splitlines())}")
        message = "\n".join(lines).encode("utf-8", "replace")
        try:
            # CLOEXEC: worker processes and Tesseract are spawned while this socket may be open.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(SEND_TIMEOUT_S)
                sock.sendto(message, self.address)
        except OSError as exc:
            if not self._warned.done:
                self._warned.done = True
                log.warning(
                    "sd_notify_failed",
                    notify_socket=self.address.replace("\0", "@", 1),
                    error=exc.strerror or str(exc),
                )


def _positive_int(raw: str | None) -> int | None:
    try:
        value = int(raw) if raw else 0
    except ValueError:
        return None
    return value if value > 0 else None


def _pid(raw: str | None) -> int | None:
    if not raw:
        return None
    # An unparsable WATCHDOG_PID is nobody's pid: sd_watchdog_enabled(3) turns the watchdog off.
    return _positive_int(raw) or -1
