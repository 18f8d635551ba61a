"""Writing a command's outputs: never over an input, all or nothing, never over a device.

:class:`OutputSet` is the one way cimc writes files:

- ``inputs(...)`` registers what the command reads; ``plan(path)`` refuses (one line) an output
  that is one of them (same resolved file, hard links included), an output named twice, a
  directory, a socket, or a parent that is a file; it runs before any work is done;
- ``put(path, data)`` / ``open(path)`` collect the bytes; nothing touches the disk yet;
- ``commit()`` (on leaving the ``with`` block without an exception) writes every regular output
  to a temporary file beside it (flushed, fsynced, size checked), then moves them all into
  place. A failure at any point removes the temporary files (and directories it created) and
  puts back any output already moved, so a failed command leaves nothing new and nothing changed.

An output that exists and is not a regular file (a character or block device such as
``/dev/full`` or ``/dev/null``, a fifo, ``/dev/stdout``, or a symlink to one) is written through
(opened and written in place), never renamed over; those are written first, so a failing device
write leaves no regular output behind. A symlink to a regular file is followed: the file it points
to is replaced and the link stays. Write errors (no space, no permission, read-only file system)
are one line that names the path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cimc.errors import CimcError


class OutputError(CimcError):
    """An output cannot be written where the user asked for it."""


def write_error(path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """The one-line error of a failed write of ``path``."""
    reason = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EISDIR: "is a directory",
        errno.ENOTDIR: "a parent is not a directory",
        errno.EFBIG: "file too large",
        errno.ENXIO: "no process is reading it",
    }.get(exc.errno or 0, exc.strerror or type(exc).__name__)
    return OutputError(f"{path}: cannot write: {reason}")


def _identity(path: Path) -> tuple[str, tuple[int, int] | None]:
    real = os.path.realpath(path)
    try:
        st = os.stat(path)
        return real, (st.st_dev, st.st_ino)
    except OSError:
        return real, None


def _is_passthrough(path: Path) -> bool:
    """Whether ``path`` is written in place: a device, fifo, or anything under /dev or /proc."""
    for p in (str(path.absolute()), os.path.realpath(path)):
        if p.startswith(("/dev/", "/proc/")):
            return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)


@dataclass
class _Planned:
    given: Path  # as the user wrote it (messages)
    target: Path  # where the bytes end up (symlinks to regular files resolved)
    passthrough: bool
    what: str
    data: bytes | None = None


class OutputSet:
    """A command's outputs, written all or nothing (see the module docstring)."""

    def __init__(self, inputs: tuple[object, ...] | list[object] = (), *, make_parents: bool = True):
        self._inputs: dict[str, tuple[str, tuple[int, int] | None]] = {}
        self._outputs: dict[str, _Planned] = {}
        self.make_parents = make_parents
        self.inputs(*inputs)

    # ---- planning -----------------------------------------------------------------------------

    def inputs(self, *paths: object) -> None:
        """Register files the command reads (``None`` is ignored)."""
        for p in paths:
            if p is not None:
                path = Path(os.fspath(p))  # type: ignore[arg-type]
                self._inputs[str(path)] = _identity(path)

    def _clashes_with_input(self, path: Path) -> str | None:
        real, ident = _identity(path)
        for name, (in_real, in_ident) in self._inputs.items():
            if real == in_real or (ident is not None and ident == in_ident):
                return name
        return None

    def plan(self, path: str | os.PathLike[str], what: str = "output") -> Path:
        """Check ``path`` as an output now (before any work); returns it as a :class:`Path`."""
        given = Path(path)
        key = os.path.realpath(given)
        if key in self._outputs:
            raise OutputError(f"{given}: named twice as an output ({self._outputs[key].what} and {what})")
        clash = self._clashes_with_input(given)
        if clash is not None:
            raise OutputError(f"{given}: {what} would overwrite the input {clash}; choose another path")
        passthrough = _is_passthrough(given)
        if passthrough and not os.path.exists(given):
            raise OutputError(f"{given}: does not exist (cimc writes into devices, it does not create them)")
        if not passthrough:
            self._check_regular_target(given, what)
        target = given if passthrough else Path(key)
        self._outputs[key] = _Planned(given, target, passthrough, what)
        return given

    def _check_regular_target(self, given: Path, what: str) -> None:
        try:
            mode = os.stat(given).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise write_error(given, exc) from None
        if mode is not None and stat.S_ISDIR(mode):
            raise OutputError(f"{given}: is a directory; {what} needs a file name")
        if mode is not None and not stat.S_ISREG(mode):
            raise OutputError(f"{given}: is not a regular file; {what} refused")
        parent = Path(os.path.realpath(given)).parent
        while not parent.exists():
            if not self.make_parents:
                raise OutputError(f"{given}: directory {parent} does not exist")
            parent = parent.parent
        if not parent.is_dir():
            raise OutputError(f"{given}: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"{given}: cannot write: permission denied in {parent}")

    # ---- collecting ---------------------------------------------------------------------------

    def put(self, path: str | os.PathLike[str], data: bytes | str, what: str = "output") -> None:
        """The whole content of output ``path`` (planned now if it was not)."""
        key = os.path.realpath(path)
        if key not in self._outputs:
            self.plan(path, what)
        self._outputs[key].data = data.encode() if isinstance(data, str) else bytes(data)

    @contextlib.contextmanager
    def open(self, path: str | os.PathLike[str], mode: str = "w", what: str = "output") -> Iterator[io.IOBase]:
        """A file object whose content becomes output ``path`` when the block ends normally."""
        if mode not in ("w", "wb"):
            raise ValueError(f"OutputSet.open: mode {mode!r}")
        buf: io.IOBase = io.StringIO() if mode == "w" else io.BytesIO()
        yield buf
        self.put(path, buf.getvalue(), what)  # type: ignore[attr-defined]

    def passthrough(self, path: str | os.PathLike[str]) -> bool:
        """Whether output ``path`` is written in place (a device, fifo or stream), not replaced."""
        planned = self._outputs.get(os.path.realpath(path))
        return planned.passthrough if planned is not None else _is_passthrough(Path(path))

    @property
    def paths(self) -> list[Path]:
        return [o.given for o in self._outputs.values() if o.data is not None]

    # ---- committing ---------------------------------------------------------------------------

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()

    def commit(self) -> list[Path]:
        """Write every output that got data; all or nothing (see the module docstring)."""
        todo = [o for o in self._outputs.values() if o.data is not None]
        made_dirs: list[Path] = []
        temps: list[tuple[_Planned, str]] = []
        try:
            for out in todo:
                if not out.passthrough:
                    made_dirs += _make_parents(out)
                    temps.append((out, _write_temp(out)))
            for out in todo:
                if out.passthrough:
                    _write_through(out)
            _move_all(temps)
        except BaseException:
            for _, tmp in temps:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            for d in reversed(made_dirs):
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise
        return [o.given for o in todo]


def _make_parents(out: _Planned) -> list[Path]:
    missing = []
    parent = out.target.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    made = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            for m in reversed(made):
                with contextlib.suppress(OSError):
                    m.rmdir()
            raise write_error(out.given, exc) from None
        made.append(d)
    return made


def _write_temp(out: _Planned) -> str:
    assert out.data is not None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.target.name}.", suffix=".tmp", dir=out.target.parent)
    except OSError as exc:
        raise write_error(out.given, exc) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        _write_all(fd, out.data)
        os.fsync(fd)
        size = os.fstat(fd).st_size
        if size != len(out.data):
            raise OutputError(f"{out.given}: cannot write: wrote {size} of {len(out.data)} bytes")
    except OSError as exc:
        os.close(fd)
        os.unlink(tmp)
        raise write_error(out.given, exc) from None
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n == 0:
            raise OSError(errno.ENOSPC, "no space left on device")
        view = view[n:]


def _write_through(out: _Planned) -> None:
    """Write into an existing device/fifo/stream in place (no temporary file, no rename)."""
    assert out.data is not None
    try:
        mode = os.stat(out.given).st_mode
    except FileNotFoundError:
        raise OutputError(f"{out.given}: does not exist (cimc writes into devices, it does not create them)") from None
    except OSError as exc:
        raise write_error(out.given, exc) from None
    flags = os.O_WRONLY | (os.O_NONBLOCK if stat.S_ISFIFO(mode) else 0)
    flags |= os.O_TRUNC if stat.S_ISREG(mode) else 0
    try:
        fd = os.open(out.given, flags)
    except OSError as exc:
        raise write_error(out.given, exc) from None
    try:
        if flags & os.O_NONBLOCK:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        _write_all(fd, out.data)
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EROFS, errno.ENOTSUP, errno.EBADF):
                raise
    except OSError as exc:
        raise write_error(out.given, exc) from None
    finally:
        os.close(fd)


def _move_all(temps: list[tuple[_Planned, str]]) -> None:
    """Move every temporary file into place; on failure put back what was replaced."""
    done: list[tuple[Path, str | None]] = []  # (target, backup of the old file or None)
    several = len(temps) > 1  # one output needs no backup: a failed rename changes nothing
    try:
        for out, tmp in temps:
            backup = _backup(out.target) if several else None
            try:
                os.replace(tmp, out.target)
            except OSError as exc:
                if backup is not None:
                    os.unlink(backup)
                raise write_error(out.given, exc) from None
            done.append((out.target, backup))
    except BaseException:
        for target, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, target)
                else:
                    os.unlink(target)
        raise
    for target, backup in done:
        if backup is not None:
            with contextlib.suppress(OSError):
                os.unlink(backup)
    for parent in {t.parent for t, _ in done}:
        _fsync_dir(parent)


def _backup(target: Path) -> str | None:
    """A hard link to the file at ``target`` (so it can be put back), or None."""
    if not target.is_file():
        return None
    backup = target.with_name(f".{target.name}.{os.getpid()}.bak")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(backup)
    try:
        os.link(target, backup)
    except OSError:
        return None
    return str(backup)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: str = "w", *, inputs: tuple[object, ...] = ()) -> Iterator[io.IOBase]:
    """One output written all or nothing (an :class:`OutputSet` of one)."""
    with OutputSet(inputs) as outs, outs.open(path, mode) as fh:
        yield fh
