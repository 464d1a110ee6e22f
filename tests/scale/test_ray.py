"""Sweeps on Ray (extra diffsim[scale]): the same results as one process, a killed worker costs only a retry, and a
cluster of two nodes (a head and a worker started as separate processes) runs a sweep that joins it.

Ray starts in 10-30 s on a loaded 2-core machine: these tests are marked slow. Timings are not asserted here (see
docs/scale.md for the measured speed-up)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import diffsim
from tests.cli.conftest import HANG_TIMEOUT, SYSID
from tests.scale.conftest import require

pytestmark = pytest.mark.slow

STEPS = 60


@pytest.fixture(autouse=True)
def _ray():
    require("ray")


def _grid64() -> list[str]:
    return ["springs.stiffness=60:130:8", "springs.damping=0.3:0.7:8"]


def test_two_workers_give_the_results_of_one_process_bit_for_bit(tmp_path):
    serial = diffsim.sweep(SYSID, tmp_path / "serial", grid=_grid64(), steps=STEPS, workers=0, say=None)
    parallel = diffsim.sweep(SYSID, tmp_path / "ray", grid=_grid64(), steps=STEPS, workers=2, say=None)
    assert len(serial) == len(parallel) == 64
    assert parallel["status"] == ["ok"] * 64
    assert parallel["best_loss"] == serial["best_loss"]  # the same floats, trial by trial
    assert serial["worker"][0] != parallel["worker"][0]  # the trials did run elsewhere
    assert len(set(parallel["worker"])) == 2  # in two worker processes


def _sweep_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "diffsim", "sweep", str(SYSID), "--out", str(out), *extra]


def _wait_for(predicate, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + HANG_TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert proc is None or proc.poll() is None, f"the sweep ended while waiting for {what}"
        time.sleep(0.1)


def test_a_killed_worker_loses_only_its_trial_which_runs_again(tmp_path):
    out = tmp_path / "s"
    cmd = _sweep_command(out, "--starts", "12", "--steps", str(STEPS), "--iters", "40", "--workers", "2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = []

        def a_trial_ended() -> bool:
            first[:] = sorted(out.glob("trials/*/result.json"))
            return bool(first)

        _wait_for(a_trial_ended, proc, "a first trial")
        victim = int(json.loads(first[0].read_text())["row"]["worker"].split(":")[1])
        os.kill(victim, signal.SIGKILL)  # a Ray worker process of this sweep, busy or about to take a trial
        output, _ = proc.communicate(timeout=HANG_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["index"] for r in rows] == list(range(12))
    assert all(r["status"] == "ok" for r in rows), output
    pids = {int(r["worker"].split(":")[1]) for r in rows}
    assert len(pids - {victim}) >= 2  # a new worker took over from the killed one


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_sweep_joins_a_two_node_cluster(tmp_path):
    """A head and a worker node as separate `ray start --block` processes (each stops its own Ray processes when
    terminated: `ray stop` would stop every Ray process of the machine)."""
    ray_exe = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--block", "--disable-usage-stats"]
    head = subprocess.Popen(
        [ray_exe, "start", "--head", "--port", str(port), "--include-dashboard=false", *common],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    nodes = [head]
    try:
        time.sleep(1)
        _wait_for(lambda: _ray_up(ray_exe, address), head, "the head node")
        worker = subprocess.Popen(
            [ray_exe, "start", "--address", address, *common],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        nodes.append(worker)
        out = tmp_path / "s"
        cmd = _sweep_command(
            out, "--grid", "springs.stiffness=60:130:6", "--steps", str(STEPS), "--address", address
        )
        deadline = time.monotonic() + HANG_TIMEOUT
        while True:  # the worker node may take a while to join: the sweep says how many nodes it found
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_TIMEOUT)
            if "2 node(s)" in proc.stdout or time.monotonic() > deadline:
                break
            shutil.rmtree(out, ignore_errors=True)
            time.sleep(2)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"joined {address}, 2 CPUs" in proc.stdout and "2 node(s)" in proc.stdout
        rows = json.loads((out / "results.json").read_text())["rows"]
        assert [r["status"] for r in rows] == ["ok"] * 6
    finally:
        for node in reversed(nodes):
            node.terminate()
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()


def _ray_up(ray_exe: str, address: str) -> bool:
    proc = subprocess.run(
        [ray_exe, "status", "--address", address], capture_output=True, text=True, timeout=120
    )
    return proc.returncode == 0
