"""Server-side paths: only files under the allowed roots, however they are spelled."""

from __future__ import annotations

from pathlib import Path

from fastapi import HTTPException


def resolve_allowed(raw: str, roots: tuple[Path, ...]) -> Path:
    """The real file ``raw`` names, if it lies under an allowed root; else 400/403/404.

    ``..`` is refused outright; relative paths are taken relative to the first
    root; symlinks are resolved before the check, so a link that points outside
    a root is refused like the path it points to.
    """
    if not roots:
        raise HTTPException(403, "server-side paths are disabled (start with --allowed-root)")
    if not raw or "\0" in raw:
        raise HTTPException(400, "path must be a non-empty string")
    given = Path(raw)
    if ".." in given.parts:
        raise HTTPException(400, "path must not contain '..'")
    candidate = given if given.is_absolute() else roots[0] / given
    real = candidate.resolve()
    for root in roots:
        if real.is_relative_to(root.resolve()):
            break
    else:
        raise HTTPException(403, f"{raw} is outside the allowed folders")
    if not real.is_file():
        raise HTTPException(404, f"no such file: {raw}")
    return real
