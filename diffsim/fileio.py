"""Writing files atomically, and checking an output location before any work is done.

Every file diffsim writes goes through `atomic_path`: the content is written to a temporary file in the same folder
and renamed over the target with `os.replace` only when writing succeeded, so an interrupted writer never leaves a
truncated file behind and the target holds either its old content or its new content, never a mix.

The temporary files are named ``.<stem>.diffsim-tmp-<pid>-<random><suffix>``: a writer killed with SIGKILL cannot
delete its own, and `remove_stale_temporaries` removes those of writers that are no longer running.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from diffsim.errors import DiffsimError

PathLike = str | os.PathLike

#: the mark in the name of every temporary file `atomic_path` creates; the process id follows it
TEMP_MARK = ".diffsim-tmp-"
_TEMP_NAME = re.compile(r"^\..*" + re.escape(TEMP_MARK) + r"(\d+)-")


def _default_file_mode() -> int:
    """The mode a file created by `open(path, "w")` would get (0o666 less the umask)."""
    # mkstemp creates 0o600 files; results should get the same permissions as any other file the user writes.
    # os.umask can only be read by setting it, so it is set back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`, with the same suffix; rename it onto `path` on success.

    The parent folder is created if missing. If the body raises (including KeyboardInterrupt), the temporary file is
    deleted and `path` is left as it was. The suffix is kept so that writers that infer the format from the name
    (matplotlib's `savefig`, Pillow's `Image.save`, ffmpeg, `numpy.save`) see the right one.

    Example::

        with atomic_path("runs/loss.png") as tmp:
            fig.savefig(tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.stem}{TEMP_MARK}{os.getpid()}-", suffix=target.suffix, dir=target.parent
        )
        tmp = Path(tmp_name)
        os.close(fd)
        yield tmp
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise DiffsimError("the writer produced no output", where=str(target))
        mode = target.stat().st_mode & 0o777 if target.exists() else _default_file_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (see `atomic_path`); returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def is_temporary(name: str) -> bool:
    """Whether a file name is one of `atomic_path`'s temporary files."""
    return _TEMP_NAME.match(name) is not None


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder: PathLike) -> list[Path]:
    """Delete the temporary files in `folder` left by writers that are no longer running (killed before they could
    clean up); returns the paths removed. Those of running processes, this one included, are kept."""
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            m = _TEMP_NAME.match(entry.name)
            if m and entry.is_file(follow_symlinks=False) and not _running(int(m.group(1))):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def check_output_folder(path: PathLike, flag: str) -> None:
    """Raise `DiffsimError` (naming `flag` and the path) unless `path` is, or can be created as, a folder that this
    process can write in. Nothing is created: the nearest existing folder of the chain gets a probe file, deleted at
    once. Called before any simulation, so that a bad output location fails in a moment rather than after the work.
    """
    _check_folder(Path(path), f"{flag} {path}")


def _check_folder(target: Path, where: str) -> None:
    for p in (target, *target.parents):
        if not os.path.lexists(p):
            continue
        if not p.is_dir():
            what = "is a file, not a folder" if p.exists() else "is a broken link"
            raise DiffsimError(f"{p} {what}", where=where)
        try:
            fd, probe = tempfile.mkstemp(prefix=f".probe{TEMP_MARK}{os.getpid()}-", dir=p)
        except OSError as e:
            raise DiffsimError(f"cannot write in {p} ({e.strerror or e})", where=where) from None
        os.close(fd)
        os.unlink(probe)
        return
    raise DiffsimError("no existing folder above it", where=where)  # pragma: no cover - "/" always exists


def check_output_file(path: PathLike, flag: str) -> None:
    """Raise `DiffsimError` unless `path` can be written: not a folder, and its folder writable (see
    `check_output_folder`)."""
    target = Path(path)
    if target.is_dir():
        raise DiffsimError(f"{path} is a folder; give a file name", where=flag)
    _check_folder(target.parent, f"{flag} {path}")
