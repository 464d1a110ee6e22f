"""`diffsim optimize` survives being stopped: killed at any point, `--resume DIR` ends where an uninterrupted run
ends, bit for bit (f64, Adam and SGD); a folder never mixes two runs; a bad output location fails before any work."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffsim.optim.fit import read_checkpoint
from tests.cli.conftest import SYSID, diffsim, ok

ITERS = (
    400  # long enough (about 3 s of fitting) that a signal sent after the first checkpoints arrives mid-fit
)
SETTINGS = {
    "adam": ["--optimizer", "adam", "--lr", "0.05"],
    "sgd": ["--optimizer", "sgd", "--lr", "100"],
}
#: what an optimize of the springs scene without rendering leaves in its folder
OUTPUTS = {"checkpoint.npz", "result.json", "history.csv", "loss.png", "params.png", "scene.toml"}


def _args(opt: str, out: str) -> list[str]:
    return [
        "optimize",
        SYSID,
        "--steps",
        "100",
        "--iters",
        str(ITERS),
        *SETTINGS[opt],
        "--no-render",
        "--out",
        out,
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """result.json of a run that was never stopped, per optimizer (made on first use)."""
    made = {}

    def get(opt: str) -> dict:
        if opt not in made:
            folder = tmp_path_factory.mktemp(f"whole-{opt}")
            ok(diffsim(*_args(opt, "o"), "--quiet", cwd=folder))
            made[opt] = json.loads((folder / "o" / "result.json").read_text())
        return made[opt]

    return get


def _start_and_stop(folder: Path, opt: str, sig: int, after: int) -> subprocess.CompletedProcess:
    """Start an optimize into folder/o (a checkpoint every 5 iterations), wait until a checkpoint holds at least
    `after` iterations, send `sig`."""
    cmd = [sys.executable, "-m", "diffsim", *map(str, _args(opt, "o")), "--save-every", "5", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = folder / "o" / "checkpoint.npz"
    deadline = time.monotonic() + 300  # a hang detector, not a speed check
    try:
        while True:
            assert proc.poll() is None, f"optimize ended before it was stopped: {proc.communicate()}"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            if checkpoint.exists() and read_checkpoint(checkpoint)["iterations"] >= after:
                break
            time.sleep(0.01)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


FAST = {("SIGINT", "adam"), ("SIGTERM", "sgd"), ("SIGKILL", "adam")}
CASES = [
    pytest.param(sig, opt, id=f"{sig}-{opt}", marks=[] if (sig, opt) in FAST else [pytest.mark.slow])
    for sig in ("SIGINT", "SIGTERM", "SIGKILL")
    for opt in ("adam", "sgd")
]


@pytest.mark.parametrize(("sig", "opt"), CASES)
def test_a_stopped_fit_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, sig, opt):
    signum = getattr(signal, sig)
    stopped = _start_and_stop(tmp_path, opt, signum, after=5)
    out = tmp_path / "o"
    saved = read_checkpoint(out / "checkpoint.npz")
    assert 5 <= saved["iterations"] < ITERS
    if signum == signal.SIGKILL:
        assert stopped.returncode == -signal.SIGKILL
        assert saved["iterations"] % 5 == 0  # the last periodic checkpoint: up to 4 iterations are done again
        # a writer killed in the middle of a write would leave its temporary file: one such, from the dead process
        (out / f".result.diffsim-tmp-{_pid_of_dead()}-x.json").write_text("{")
    else:
        assert stopped.returncode == 128 + signum, stopped.stderr
        assert f"interrupted ({sig})" in stopped.stderr
        assert "continue it with: diffsim optimize --resume o" in stopped.stderr
        partial = json.loads((out / "result.json").read_text())  # what was found so far, marked as such
        assert partial["stopped"] == "interrupted" and partial["iterations"] == saved["iterations"]
        assert {p.name for p in out.iterdir()} == {
            "checkpoint.npz",
            "result.json",
            "history.csv",
            "scene.toml",
        }

    ok(diffsim("optimize", "--resume", "o", "--no-render", "--quiet", cwd=tmp_path))
    result = json.loads((out / "result.json").read_text())
    whole = uninterrupted(opt)
    assert result["params"] == whole["params"]  # JSON keeps every bit of a float
    assert result["loss_history"] == whole["loss_history"]
    assert result["initial_params"] == whole["initial_params"] and result["source"] == whole["source"]
    assert result["iterations"] == ITERS and result["stopped"] == "iterations"
    assert {p.name for p in out.iterdir()} == OUTPUTS  # no temporary file, nothing of another run
    assert len((out / "history.csv").read_text().splitlines()) == ITERS + 1


def _pid_of_dead() -> int:
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_run_into_the_same_folder_is_refused_and_force_replaces_it(tmp_path):
    first = ["optimize", SYSID, "--steps", "20", "--iters", "2", "--no-render", "--quiet", "--out", "o"]
    ok(diffsim(*first, cwd=tmp_path))
    out = tmp_path / "o"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    second = ["optimize", SYSID, "--steps", "20", "--iters", "3", "--no-render", "--quiet", "--out", "o"]
    proc = diffsim(*second, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("diffsim: error: --out: o holds the outputs of an earlier run")
    assert "diffsim optimize --resume o" in proc.stderr and "--force" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched

    (out / "notes.txt").write_text("mine")  # not diffsim's: kept
    (out / "params.png").write_bytes(b"from a run that drew it")  # diffsim's: goes
    (out / f".history.diffsim-tmp-{_pid_of_dead()}-x.csv").write_text("half")  # a killed writer's
    ok(diffsim(*second, "--force", cwd=tmp_path))
    result = json.loads((out / "result.json").read_text())
    assert result["iterations"] == 3
    names = {p.name for p in out.iterdir()}
    assert names == OUTPUTS | {"notes.txt"}
    assert (out / "params.png").read_bytes() != b"from a run that drew it"


def test_resume_refuses_other_settings_and_folders_without_a_fit(tmp_path):
    ok(
        diffsim(
            "optimize",
            SYSID,
            "--steps",
            "20",
            "--iters",
            "2",
            "--no-render",
            "--quiet",
            "--out",
            "o",
            cwd=tmp_path,
        )
    )
    proc = diffsim("optimize", "--resume", "o", "--lr", "0.1", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("diffsim: error: --resume: --lr: a resumed fit keeps the settings")
    proc = diffsim("optimize", "--resume", "o", "--out", "p", cwd=tmp_path)
    assert (
        proc.returncode == 2 and "a resumed fit writes into the folder it continues (o), not p" in proc.stderr
    )
    (tmp_path / "empty").mkdir()
    proc = diffsim("optimize", "--resume", "empty", cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr
        == "diffsim: error: --resume: no checkpoint.npz in empty: not an output folder of `diffsim optimize`\n"
    )
    proc = diffsim("optimize", "--resume", "missing", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == "diffsim: error: --resume missing: folder not found\n"
    # a finished fit resumed with more iterations goes on from where it ended
    ok(diffsim("optimize", "--resume", "o", "--iters", "4", "--no-render", "--quiet", cwd=tmp_path))
    assert json.loads((tmp_path / "o" / "result.json").read_text())["iterations"] == 4
    # one process at a time in a folder: here the test holds the lock a running optimize would
    fd = os.open(tmp_path / "o", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()}
        proc = diffsim("optimize", "--resume", "o", "--iters", "6", "--no-render", "--quiet", cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stderr == "diffsim: error: --out: o is in use by another diffsim process\n"
        assert {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()} == before
    finally:
        os.close(fd)


def test_run_removes_a_killed_writers_temporary_files(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    stale = out / f".trajectory.diffsim-tmp-{_pid_of_dead()}-x.npz"
    stale.write_bytes(b"half")
    ok(diffsim("run", SYSID, "--steps", "5", "--out", "r", cwd=tmp_path))
    assert sorted(p.name for p in out.iterdir()) == ["scene.toml", "trajectory.npz"]


def _unwritable(tmp_path) -> list[tuple[str, str]]:
    """(output path, the reason the error gives) for places no one can write to, whatever the user."""
    (tmp_path / "afile").write_text("x")
    cases = [("/proc/diffsim-out", "cannot write in /proc"), ("afile/out", "afile is a file, not a folder")]
    if os.geteuid() != 0:  # root writes in read-only folders
        (tmp_path / "ro").mkdir(mode=0o555)
        cases.append(("ro/out", "cannot write in"))
    return cases


@pytest.mark.parametrize(
    "command",
    [
        ["optimize", "walker2d"],
        ["demo"],
        ["run", "walker2d"],
        ["render", "walker2d"],
    ],
    ids=lambda c: c[0],
)
def test_an_unwritable_output_fails_before_any_work(tmp_path, command):
    cache = tmp_path / "kernel-cache"
    for out, reason in _unwritable(tmp_path):
        target = f"{out}.gif" if command[0] == "render" else out
        proc = diffsim(
            *command,
            "--out",
            target,
            cwd=tmp_path,
            timeout=120,
            env={"TI_OFFLINE_CACHE_FILE_PATH": str(cache)},
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"diffsim: error: --out {target}: "), proc.stderr
        assert reason in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stdout == ""
    # nothing was compiled (Taichi writes every kernel it compiles to its cache) and nothing was written
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "kernel-cache") == sorted(
        ["afile"] + (["ro"] if os.geteuid() != 0 else [])
    )
