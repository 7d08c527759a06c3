"""When to try again: pure retry policy (STYLE: "retry is a policy, not a loop").

Nothing here sleeps, schedules or touches the store. The scheduler asks :class:`RetryPolicy` when a
task that failed should run again, writes that time into the store (``not_before``), and only wakes
up at it; the store stays the single source of truth. Randomness is injected so tests are exact.

Jitter spreads retries of many tasks that failed together (a full disk, a dead worker holding a
chunk of calls) so they do not all come back in the same instant.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flowd.errors import (
    FlowdError,
    MissingDependencyError,
    StepOutputError,
    StepTimeoutError,
)

Rng = Callable[[], float]
"""A source of uniform floats in ``[0, 1)``, such as ``random.Random(seed).random``."""

_MAX_DOUBLINGS = 62  # 2**62 s is far past any cap; keeps the arithmetic finite for any attempt


def _jittered(delay_s: float, jitter: float, rng: Rng) -> float:
    return max(0.0, delay_s * (1.0 + jitter * (2.0 * rng() - 1.0)))


def backoff_s(
    attempt: int,
    base_s: float = 1.0,
    cap_s: float = 300.0,
    jitter: float = 0.1,
    rng: Rng = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = the first retry).

    ``base_s × 2^(attempt-1)``, capped at ``cap_s``, then scaled by a uniform factor in
    ``[1 - jitter, 1 + jitter]`` (so the result may exceed ``cap_s`` by at most ``jitter``).
    """
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more, not {attempt}")
    if base_s < 0 or cap_s < 0 or not 0 <= jitter <= 1:
        raise ValueError("base_s and cap_s must be >= 0 and jitter within [0, 1]")
    delay_s = min(cap_s, base_s * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))
    return _jittered(delay_s, jitter, rng)


def scheduled_backoff_s(
    attempt: int, waits_s: Sequence[float], jitter: float = 0.1, rng: Rng = random.random
) -> float | None:
    """Seconds before retry ``attempt`` from an explicit list of waits (webhooks'
    ``backoff_s = [1, 5, 30, …]``), ±``jitter``; ``None`` when the list is used up (give up)."""
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more, not {attempt}")
    if attempt > len(waits_s):
        return None
    return _jittered(float(waits_s[attempt - 1]), jitter, rng)


# I/O errors that say "not now" rather than "never": a busy or briefly unavailable file or device.
TRANSIENT_ERRNOS: frozenset[int] = frozenset(
    {
        errno.EBUSY,
        errno.EAGAIN,
        errno.EINTR,
        errno.ETIMEDOUT,
        errno.ETXTBSY,
        errno.ENOLCK,
        errno.ESTALE,  # NFS
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENOMEM,
        errno.ENOSPC,  # someone may free space; failing every file at once would be worse
        errno.EMFILE,
        errno.ENFILE,
    }
)


def is_transient(error: BaseException) -> bool:
    """Whether a retry of the failed work may succeed (SPEC §6 "Failures").

    Transient: a step timeout, a missing system program (install it), a stored step output that
    does not parse (fix it), ``TimeoutError``, and ``OSError``\\ s in :data:`TRANSIENT_ERRNOS`.
    Permanent: every other :class:`~flowd.errors.FlowdError` (a corrupt or unsupported file, a UDF
    that raised, bad settings) and anything else — an unknown exception is a bug, and retrying a bug
    only delays the message.
    """
    if isinstance(error, StepTimeoutError | MissingDependencyError | StepOutputError):
        return True
    if isinstance(error, FlowdError):
        return False
    if isinstance(error, TimeoutError):
        return True
    if isinstance(error, OSError):
        return error.errno in TRANSIENT_ERRNOS
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a task that failed transiently runs again.

    ``max_attempts`` counts attempts, the first run included (SPEC §8 ``max_attempts``, default 3):
    with 3, a task runs at most three times before it fails for good.
    """

    max_attempts: int = 3
    base_s: float = 1.0
    cap_s: float = 300.0
    jitter: float = 0.1

    def retry_at(
        self, attempts: int, transient: bool, now: float, rng: Rng = random.random
    ) -> float | None:
        """When a task that has made ``attempts`` attempts and just failed should run again
        (a Unix time for ``not_before``), or ``None`` to fail it for good now."""
        if not transient or attempts >= self.max_attempts:
            return None
        return now + backoff_s(attempts, self.base_s, self.cap_s, self.jitter, rng)
