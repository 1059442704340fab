"""Writing results so that a failed or killed run leaves no partial file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mraa_jax.errors import InputError


def _read_umask() -> int:
    """The process's umask (reading it means setting it; done once, at import, not while threads write files)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """A temporary file beside `path` to write; renamed to `path` when the block ends, removed if it raises.

    The temporary name keeps the suffix (writers pick the format by it) and starts with a dot.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        temporary.chmod(0o666 & ~_UMASK)  # mkstemp's 0600 would outlive the rename
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path, text: str) -> Path:
    """`text` to `path`, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def check_writable(folder, what: str) -> None:
    """InputError naming `what` unless files can be created in `folder` (made if missing)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InputError(f"{what}: cannot write to {folder} ({error.strerror or type(error).__name__})") from None
