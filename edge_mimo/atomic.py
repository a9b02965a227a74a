"""Atomic writes: a file or directory appears complete, or not at all."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError


def check_replaceable(target: str | Path, marker: str, owned: Callable[[Path], bool] | None = None) -> None:
    """Refuse an output directory that exists and is not an earlier output marked by the file ``marker``.

    A file, or a non-empty directory without ``marker`` (or for which ``owned(directory)`` is false: a file
    named ``manifest.json`` alone does not make a web app an edge-mimo bundle), raises ConfigError: a mistyped
    output path must never delete someone's directory. Call it before long work; :func:`atomic_dir` calls it too.
    """
    target = Path(target)
    try:
        foreign = target.exists() and not target.is_dir() or (
            target.is_dir() and any(target.iterdir())
            and not ((target / marker).is_file() and (owned is None or owned(target))))
    except OSError as e:
        raise ConfigError(f"cannot inspect the output {target} ({e.strerror or e}): choose another output "
                          "directory") from e
    if foreign:
        raise ConfigError(f"{target} exists and is not an earlier output (no {marker} of ours): refusing to "
                          "replace it; choose a new or empty output directory")


def _remove_stale_partials(target: Path) -> None:
    """Temporary directories of earlier writers of ``target`` that died (SIGKILL, power loss)."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.partial-(\d+)-.*")
    for entry in target.parent.iterdir():
        m = pattern.fullmatch(entry.name)
        if m and entry.is_dir() and not _alive(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


@contextmanager
def atomic_dir(target: str | Path, overwrite: bool = True, marker: str | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; move it into place only if the block succeeds.

    ``marker``: see :func:`check_replaceable` (e.g. ``manifest.json`` for bundles).
    """
    target = Path(target)
    if marker is not None:
        check_replaceable(target, marker)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent))
    except OSError as e:
        raise ConfigError(f"cannot write {target} ({e.strerror or e}): its parent {target.parent} is not a "
                          "writable directory; choose another output path") from e
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary directory
        if target.exists() or target.is_symlink():
            if not overwrite:
                raise FileExistsError(f"{target} exists: remove it or choose another output path")
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_entries(folder: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory; entries the block writes there then replace those of ``folder``, all or none.

    The staging directory lies beside ``folder`` (same filesystem, never inside it: a server that loads every
    folder of ``folder``, like Triton, never sees a partial or backup entry). On success each staged entry replaces
    the one of that name (a symlink is replaced, its target kept); on any failure, Ctrl-C included, ``folder`` keeps
    exactly what it had, and a ``folder`` this call created is removed. Callers validate before entering.
    """
    folder = Path(folder)
    created = not os.path.lexists(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        real = folder.resolve()
        _remove_stale_partials(real)
        stage = Path(tempfile.mkdtemp(prefix=f".{real.name}.partial-{os.getpid()}-", dir=real.parent))
    except OSError as e:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise ConfigError(f"cannot write into {folder} ({e.strerror or e}): choose a writable folder") from e
    try:
        if os.stat(stage).st_dev != os.stat(real).st_dev:
            raise ConfigError(f"{real} is a mount point: its entries cannot be swapped in atomically from "
                              f"{real.parent}; write into a folder inside it, or one that is not a mount point")
        (stage / "new").mkdir()
        yield stage / "new"
        _swap_in(stage / "new", real, stage / "old")
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # old entries: a replaced symlink is unlinked, its target kept


def _swap_in(new: Path, folder: Path, old: Path) -> None:
    """Rename each entry of ``new`` into ``folder``, moving the one it replaces into ``old``; undone on failure."""
    old.mkdir()
    done: list[str] = []
    try:
        for name in sorted(os.listdir(new)):
            done.append(name)
            if os.path.lexists(folder / name):
                os.rename(folder / name, old / name)
            os.rename(new / name, folder / name)
    except BaseException:
        for name in reversed(done):
            if not os.path.lexists(new / name):
                os.rename(folder / name, new / name)
            if os.path.lexists(old / name):
                os.rename(old / name, folder / name)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename; the file gets the permissions an ordinary
    ``open(path, "w")`` would (0666 less the umask), not the temporary file's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
