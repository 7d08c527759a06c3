"""Path confinement for API requests (SPEC §7): every path a request names resolves inside the
daemon's ``data_root`` or one of its ``allowed_roots``.

Relative paths are relative to ``data_root``; absolute ones must lie in a root. ``..`` components
are refused outright (even ones that would stay inside: a path that climbs is a mistake or an
attack). The path is then resolved with symlinks followed, and the *resolved* path must be inside a
(resolved) root — so a symlink inside ``data_root`` pointing at ``/etc`` is refused too. The
resolved path is what the daemon uses from then on, so a link swapped after the check cannot
redirect the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from flowd.errors import PathNotFoundError, PathRefusedError, RequestError


class PathPolicy:
    def __init__(self, data_root: Path, allowed_roots: Sequence[Path] = ()) -> None:
        self.data_root = Path(data_root).resolve()
        self.roots = (self.data_root, *(Path(r).resolve() for r in allowed_roots))

    def inside(self, real: Path) -> bool:
        return any(real == root or root in real.parents for root in self.roots)

    def resolve(self, what: str, raw: str, *, must_exist: bool = True) -> Path:
        """The real path ``raw`` names. Raises :class:`~flowd.errors.RequestError` for an empty
        or malformed path, :class:`~flowd.errors.PathRefusedError` for one outside the roots,
        :class:`~flowd.errors.PathNotFoundError` for a missing one (with ``must_exist``)."""
        if not raw or not raw.strip():
            raise RequestError(f"{what} must not be empty")
        if "\0" in raw:
            raise RequestError(f"{what} must not contain a NUL character")
        pure = PurePosixPath(raw)
        if ".." in pure.parts:
            raise PathRefusedError(what, raw, "'..' is not allowed in paths")
        candidate = Path(raw) if pure.is_absolute() else self.data_root / raw
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise PathRefusedError(what, raw, f"it cannot be resolved: {exc}") from None
        if not self.inside(real):
            raise PathRefusedError(
                what, raw, "it resolves outside the daemon's data_root and allowed_roots"
            )
        if must_exist:
            try:
                found = real.exists()
            except OSError as exc:  # ENAMETOOLONG and the like: exists() re-raises them
                raise RequestError(
                    f"{what} {raw!r} cannot be used: {exc.strerror or exc}"
                ) from None
            if not found:
                raise PathNotFoundError(what, raw)
        return real

    def shown(self, path: Path | str | None) -> str | None:
        """A path as responses show it: absolute (the seed's "full path")."""
        return None if path is None else str(path)
