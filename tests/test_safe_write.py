"""cimc.safe_write: no input overwritten, all or nothing, devices/fifos/symlinks left intact,
write errors (ENOSPC) as one line naming the path."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from cimc.errors import CimcError
from cimc.safe_write import OutputSet, atomic_output


def _listing(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(d.rglob("*"))}


def full_device(tmp_path: Path) -> Path:
    """A character device that behaves like /dev/full (ENOSPC on write): a node made here as
    root, so a bug could never replace the real /dev/full; /dev/full itself otherwise."""
    if os.geteuid() == 0:
        node = tmp_path / "full"
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        return node
    return Path("/dev/full")


def null_device(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        node = tmp_path / "null"
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return node
    return Path("/dev/null")


def test_output_equal_to_an_input_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    os.link(model, tmp_path / "hard.onnx")
    (tmp_path / "soft.onnx").symlink_to(model)
    for out in (model, tmp_path / "hard.onnx", tmp_path / "soft.onnx", tmp_path / "." / "m.onnx"):
        with pytest.raises(CimcError, match="would overwrite the input"):
            OutputSet([model]).plan(out, "-o")
    assert model.read_bytes() == b"model"


def test_same_output_twice_is_refused(tmp_path: Path) -> None:
    outs = OutputSet()
    outs.plan(tmp_path / "a.json", "--json")
    with pytest.raises(CimcError, match="named twice"):
        outs.plan(tmp_path / "a.json", "--report")


def test_directory_and_file_in_the_way_are_refused_before_work(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(CimcError, match="is a directory"):
        OutputSet().plan(tmp_path, "-o")
    with pytest.raises(CimcError, match="is not a directory"):
        OutputSet().plan(tmp_path / "f" / "out.json", "-o")


def test_all_or_nothing_when_the_second_output_fails(tmp_path: Path) -> None:
    (tmp_path / "keep.json").write_text("old")
    dev = full_device(tmp_path)
    before = _listing(tmp_path)
    with pytest.raises(CimcError) as info, OutputSet() as outs:
        outs.put(tmp_path / "keep.json", "new")
        outs.put(tmp_path / "sub" / "new.npy", b"123")
        outs.put(dev, b"x" * 100)
    assert info.value.message == f"{dev}: cannot write: no space left on device"
    assert _listing(tmp_path) == before  # nothing new (not even sub/), nothing changed


def test_rename_failure_puts_back_what_was_replaced(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("old a")
    outs = OutputSet()
    outs.put(a, "new a")
    outs.put(b, "new b")
    b.mkdir()  # something got in the way after the check: the second rename fails
    (b / "x").write_text("")
    before = _listing(tmp_path)
    with pytest.raises(CimcError, match="b.json: cannot write"):
        outs.commit()
    assert _listing(tmp_path) == before
    assert a.read_text() == "old a"


def test_success_writes_everything_and_keeps_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with OutputSet() as outs:
        outs.put(link, "new")
        with outs.open(tmp_path / "d" / "e" / "x.bin", "wb") as fh:
            fh.write(b"\0\1")
    assert link.is_symlink() and real.read_text() == "new"
    assert (tmp_path / "d" / "e" / "x.bin").read_bytes() == b"\0\1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "link.json", "real.json"]  # no temps


def test_devices_are_written_through_never_replaced(tmp_path: Path) -> None:
    dev = null_device(tmp_path)
    link = tmp_path / "to_null"
    link.symlink_to(dev)
    for target in (dev, link):
        with atomic_output(target, "w") as fh:
            fh.write("discarded")
    assert stat.S_ISCHR(os.stat(dev).st_mode) and link.is_symlink()
    full = full_device(tmp_path)
    with pytest.raises(CimcError, match="no space left on device"), atomic_output(full, "wb") as fh:
        fh.write(b"x")
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_fifo_is_written_through_or_refused_without_a_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(CimcError, match="no process is reading it"), atomic_output(fifo) as fh:
        fh.write("x")
    got: list[bytes] = []
    opened = threading.Event()

    def reader() -> None:
        with open(fifo, "rb") as fh:
            opened.set()
            got.append(fh.read())

    t = threading.Thread(target=reader)
    t.start()
    fd = os.open(fifo, os.O_WRONLY)  # wait until the reader is there
    opened.wait(5)
    with atomic_output(fifo) as fh:
        fh.write("hello")
    os.close(fd)
    t.join(5)
    assert got == [b"hello"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_failed_body_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "x.json") as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
