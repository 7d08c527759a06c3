"""API bearer tokens (SPEC §7, §8 Security).

With ``[api] tokens_file`` set, the tokens are its non-empty lines (``#`` starts a comment line).
Otherwise the daemon uses ``state_dir/api-token``, creating it with a random token (mode 0600) on
first start; the CLI reads the same file, so a local user who may read the state directory can talk
to the daemon without copying anything. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from flowd.errors import ConfigError

if TYPE_CHECKING:
    from flowd.config import FlowdConfig

TOKEN_FILE = "api-token"


def token_file(config: FlowdConfig) -> Path:
    """The file the daemon's tokens come from."""
    return config.api.tokens_file or (config.state_dir / TOKEN_FILE)


def read_tokens(path: Path) -> tuple[str, ...]:
    """The tokens in ``path``: one per line, blank lines and ``#`` lines skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            str(path), [f"{path}: cannot read the API tokens: {exc.strerror or exc}"]
        ) from None
    tokens = tuple(
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not tokens:
        raise ConfigError(str(path), [f"{path}: holds no API token"])
    return tokens


def ensure_tokens(config: FlowdConfig) -> tuple[str, ...]:
    """The daemon's tokens, creating ``state_dir/api-token`` when no tokens file is configured
    and none exists yet (atomically, 0600 from the start: never readable by others even briefly)."""
    path = token_file(config)
    if config.api.tokens_file is None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (token + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process created it meanwhile: theirs wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return read_tokens(path)


def token_matches(given: str, tokens: Iterable[str]) -> bool:
    """Whether ``given`` is one of ``tokens``, comparing every one in constant time."""
    supplied = given.encode("utf-8", "surrogateescape")
    found = False
    for token in tokens:
        found |= hmac.compare_digest(supplied, token.encode("utf-8", "surrogateescape"))
    return found
