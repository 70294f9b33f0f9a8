"""Atomic writes: a reader sees the whole new file or the previous one, never a half-written one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bridge.trace import current_umask


def write_atomically(path: Path, text: str) -> None:
    """Write text to a temporary sibling, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes 0600; the result is an ordinary file
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
