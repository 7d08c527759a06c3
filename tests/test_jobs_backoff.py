"""The retry policy: exponential backoff with jitter, an explicit schedule, transient or not."""

from __future__ import annotations

import errno
import random

import pytest

from flowd.errors import (
    BinaryError,
    DocumentError,
    MissingDependencyError,
    RunSettingsError,
    StepError,
    StepOutputError,
    StepTimeoutError,
)
from flowd.jobs.backoff import RetryPolicy, backoff_s, is_transient, scheduled_backoff_s


def fixed(value: float) -> random.Random:
    class Fixed(random.Random):
        def random(self) -> float:
            return value

    return Fixed()


def test_doubles_up_to_the_cap_without_jitter() -> None:
    waits = [backoff_s(n, base_s=1.0, cap_s=30.0, jitter=0.0) for n in range(1, 8)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_jitter_bounds_come_from_the_random_source() -> None:
    assert backoff_s(3, 2.0, 100.0, 0.25, fixed(0.0).random) == pytest.approx(8.0 * 0.75)
    assert backoff_s(3, 2.0, 100.0, 0.25, fixed(0.5).random) == pytest.approx(8.0)
    assert backoff_s(3, 2.0, 100.0, 0.25, fixed(0.999999).random) == pytest.approx(10.0, 1e-5)


def test_seeded_jitter_is_reproducible_and_in_range() -> None:
    a = [backoff_s(n, 1.0, 60.0, 0.1, random.Random(7).random) for n in range(1, 50)]
    b = [backoff_s(n, 1.0, 60.0, 0.1, random.Random(7).random) for n in range(1, 50)]
    assert a == b
    for n, wait in enumerate(a, 1):
        nominal = min(60.0, 2.0 ** (n - 1))
        assert nominal * 0.9 <= wait <= nominal * 1.1


def test_any_attempt_number_is_finite() -> None:
    assert backoff_s(10_000, 1.0, 300.0, 0.0) == 300.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempt": 0},
        {"attempt": -1},
        {"attempt": 1, "base_s": -1.0},
        {"attempt": 1, "cap_s": -1.0},
        {"attempt": 1, "jitter": 1.5},
    ],
)
def test_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        backoff_s(**kwargs)  # type: ignore[arg-type]


def test_scheduled_waits_then_gives_up() -> None:
    waits = (1, 5, 30)
    got = [scheduled_backoff_s(n, waits, 0.0) for n in range(1, 5)]
    assert got == [1.0, 5.0, 30.0, None]
    assert scheduled_backoff_s(2, waits, 0.1, fixed(0.0).random) == pytest.approx(4.5)
    with pytest.raises(ValueError):
        scheduled_backoff_s(0, waits)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (StepTimeoutError("refine", "a.pdf", 5), True),
        (MissingDependencyError("a.png", "tesseract is not installed"), True),
        (StepOutputError("a.ibmsg does not parse"), True),
        (TimeoutError("slow"), True),
        (OSError(errno.EBUSY, "busy"), True),
        (OSError(errno.ESTALE, "stale NFS handle"), True),
        (OSError(errno.ENOENT, "gone"), False),
        (PermissionError(errno.EACCES, "denied"), False),
        (DocumentError("a.pdf", "encrypted"), False),
        (StepError("udf", "a.pdf", "ValueError: x"), False),
        (BinaryError("b.ibflowbin", "truncated"), False),
        (RunSettingsError("bad"), False),
        (ValueError("a bug"), False),
    ],
)
def test_is_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_retry_policy() -> None:
    policy = RetryPolicy(max_attempts=3, base_s=2.0, cap_s=60.0, jitter=0.0)
    assert policy.retry_at(1, transient=True, now=100.0) == 102.0
    assert policy.retry_at(2, transient=True, now=100.0) == 104.0
    assert policy.retry_at(3, transient=True, now=100.0) is None  # three attempts made: done
    assert policy.retry_at(1, transient=False, now=100.0) is None  # permanent: fail at once
