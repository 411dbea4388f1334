"""Atomic file writes: write to a temporary file beside the target, then ``os.replace``.

Results keep the permissions any other file would get: ``mkstemp`` creates its file with mode 0600 (and
``mkdtemp`` its folder with 0700) whatever the umask, so before the temporary takes the target's name it is
given ``0666 & ~umask`` (files) or ``0777 & ~umask`` (folders), as ``open()`` / ``mkdir`` would have. A folder
that cannot be written is reported with the user's path, not the temporary name.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_dir", "umask", "default_mode"]


def umask() -> int:
    """The process umask (read without changing it where the platform allows)."""
    try:  # Linux >= 4.7
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # pragma: no cover - other platforms
    os.umask(mask)
    return mask


def default_mode(folder: bool = False) -> int:
    """The mode a new file (0666) or folder (0777) gets under the current umask."""
    return (0o777 if folder else 0o666) & ~umask()


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PermissionError(f"cannot create the folder {path.parent} for {path}: {e.strerror}") from None


def _cannot_write(path: Path, e: OSError) -> PermissionError:
    return PermissionError(f"cannot write {path}: {e.strerror} (is the folder {path.parent} writable?)")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path`` atomically (with the
    umask's file mode), on error it is removed and ``path`` is left as it was."""
    path = Path(path)
    _make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _cannot_write(path, e) from None
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):  # a writer may have replaced the file; chmod what is there now
            os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _chmod_tree(root: Path) -> None:
    """Give a freshly built folder tree the umask's modes (files 0666 & ~umask, folders 0777 & ~umask)."""
    fmode, dmode = default_mode(), default_mode(folder=True)
    os.chmod(root, dmode)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), dmode)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), fmode)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Like :func:`atomic_path` for a folder (e.g. a zarr store): yield a temporary name beside ``path`` (not
    yet created), then swap the folder built there in; an existing ``path`` is moved aside and removed only
    after the swap. The tree gets the umask's modes."""
    path = Path(path)
    _make_parent(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise _cannot_write(path, e) from None
    shutil.rmtree(tmp)
    try:
        yield tmp
        if tmp.exists():
            _chmod_tree(tmp)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
