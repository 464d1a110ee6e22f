"""diffsim.fileio: atomic writes that leave nothing behind, and output locations checked up front."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from diffsim.errors import DiffsimError
from diffsim.fileio import (
    atomic_path,
    check_output_file,
    check_output_folder,
    is_temporary,
    remove_stale_temporaries,
    write_text_atomic,
)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporary_files_are_recognisable_and_carry_the_suffix(tmp_path):
    with atomic_path(tmp_path / "loss.png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png"
        assert is_temporary(tmp.name) and f"-tmp-{os.getpid()}-" in tmp.name
        tmp.write_bytes(b"png")
    assert os.listdir(tmp_path) == ["loss.png"]
    assert not is_temporary("loss.png") and not is_temporary(".hidden.png")


def test_a_failed_mkstemp_leaves_nothing_and_says_why(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError), atomic_path(tmp_path / "afile" / "out.json"):
        pass
    assert os.listdir(tmp_path) == ["afile"]


def test_stale_temporaries_of_dead_writers_are_removed_others_kept(tmp_path):
    dead = tmp_path / f".result.diffsim-tmp-{_dead_pid()}-abc.json"
    mine = tmp_path / f".result.diffsim-tmp-{os.getpid()}-def.json"
    other = tmp_path / ".something-else.json"
    for p in (dead, mine, other):
        p.write_text("{")
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert sorted(os.listdir(tmp_path)) == sorted([mine.name, other.name])
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_sigterm_during_a_write_leaves_no_temporary(tmp_path):
    """The command line turns SIGTERM into an exception, so atomic_path deletes its file (SIGKILL cannot be
    caught: remove_stale_temporaries is for that)."""
    script = (
        "import sys, time\n"
        "from diffsim.cli import _install_signal_handlers\n"
        "from diffsim.fileio import atomic_path\n"
        "_install_signal_handlers()\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_text('half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(120)\n"
    )
    target = tmp_path / "result.json"
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "writing\n"
        assert len(os.listdir(tmp_path)) == 1  # the temporary file
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert os.listdir(tmp_path) == []


def test_output_checks_name_the_place(tmp_path):
    (tmp_path / "afile").write_text("x")
    check_output_folder(tmp_path / "new" / "deeper", "--out")  # creatable
    check_output_file(tmp_path / "new" / "a.gif", "--out")
    assert not (tmp_path / "new").exists()  # checked, not created
    cases = [
        (check_output_folder, "/proc/x", "--out /proc/x: cannot write in /proc"),
        (
            check_output_folder,
            tmp_path / "afile" / "o",
            f"afile/o: {tmp_path / 'afile'} is a file, not a folder",
        ),
        (check_output_file, "/proc/x.gif", "--out /proc/x.gif: cannot write in /proc"),
        (check_output_file, tmp_path, "is a folder; give a file name"),
    ]
    for check, path, message in cases:
        with pytest.raises(DiffsimError, match=re.escape(message)):
            check(path, "--out")
    assert os.listdir(tmp_path) == ["afile"]  # the probe files are gone


def test_write_text_atomic_replaces_whole(tmp_path):
    path = tmp_path / "a.json"
    write_text_atomic(path, "1")
    write_text_atomic(path, "22")
    assert path.read_text() == "22" and os.listdir(tmp_path) == ["a.json"]
