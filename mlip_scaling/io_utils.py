"""Atomic file writes, their stale temporary files, folder locks and content hashes."""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from mlip_scaling.errors import ConfigError

__all__ = ["atomic_path", "atomic_torch_save", "atomic_write_text", "file_hash",
           "remove_stale_temps", "exclusive_lock"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a half-written file at ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def file_hash(path: str | os.PathLike, algorithm: Callable = hashlib.sha256) -> str:
    """Hex digest of a file's content (streamed)."""
    digest = algorithm()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a killed :func:`atomic_path` left beside ``path``.

    Call only while no other process may be writing ``path`` (e.g. under its folder lock).
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


@contextmanager
def exclusive_lock(lock_path: str | os.PathLike, busy: str = "", wait: bool = False
                   ) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created; holds this process id).

    When another process holds it: with ``wait`` block until it is free, else raise
    :class:`ConfigError` with ``busy`` and the holder's pid. The kernel releases the lock
    when the holder exits, however it dies.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock_path, "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise ConfigError(f"{busy} (held by process {holder} via {lock_path})") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()


def lock_holder(lock_path: str | os.PathLike) -> str | None:
    """The process id written in ``lock_path`` when another open file holds its
    :func:`exclusive_lock` now, else None (no file, or free: probed and released at once)."""
    lock_path = Path(lock_path)
    if not lock_path.is_file():
        return None
    with open(lock_path) as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return fh.read().strip() or "?"
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


def check_torch_archive(path: str | os.PathLike, what: str, error: type[Exception]) -> Path:
    """``path`` as a Path when it is a torch zip archive, else ``error`` (one line naming
    the file: missing, or not a zip archive: empty, truncated or corrupt)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what}")
    if not zipfile.is_zipfile(path):
        raise error(f"{path}: not a readable {what} (not a torch zip archive: empty, "
                    "truncated or corrupt)")
    return path
