"""Sweeps in one process (no Ray): each trial is the scene with its values, results are written as trials end,
and --resume runs only the trials without a result."""

import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

import diffsim
from diffsim.errors import DiffsimError
from diffsim.scene import load_scene
from tests.cli.conftest import HANG_TIMEOUT, SYSID
from tests.cli.conftest import diffsim as run_cli

STEPS = 60


def _loss_of(sets: list[str]) -> float:
    """The task's loss of the scene with these --set values, simulated directly (no sweep)."""
    scene = load_scene(SYSID, sets, steps=STEPS)
    scene.init_backend()
    _, sim, _ = scene.build()
    return sim.forward()


def test_grid_of_runs_gives_the_loss_of_each_scene(tmp_path):
    table = diffsim.sweep(
        SYSID, tmp_path / "s", grid=["springs.stiffness=60:100:3", "springs.damping=0.3:0.5:2"], steps=STEPS,
        workers=0, say=None,
    )  # fmt: skip
    assert len(table) == 6 and table["status"] == ["ok"] * 6
    assert table["values.springs.stiffness"] == [60.0, 60.0, 80.0, 80.0, 100.0, 100.0]
    for row in (table.rows[0], table.rows[5]):  # the first (built) and a later (kept simulation) trial
        k, c = row["values.springs.stiffness"], row["values.springs.damping"]
        assert row["best_loss"] == _loss_of([f"springs.stiffness={k}", f"springs.damping={c}"])
    # the truth (stiffness 100, damping 0.5) is the best point of the grid
    assert table.best()["index"] == 5
    saved = json.loads((tmp_path / "s" / "results.json").read_text())
    assert [r["best_loss"] for r in saved["rows"]] == table["best_loss"]
    assert (tmp_path / "s" / "loss.png").stat().st_size > 0
    assert (tmp_path / "s" / "trials" / "trial_00003" / "result.json").is_file()


def test_starts_fit_from_the_scene_values_then_drawn_ones(tmp_path):
    table = diffsim.sweep(SYSID, tmp_path / "s", starts=3, steps=STEPS, iters=8, workers=0, say=None)
    assert table["status"] == ["ok"] * 3
    first = json.loads((tmp_path / "s" / "trials" / "trial_00000" / "result.json").read_text())
    scene = load_scene(SYSID)
    assert first["initial_params"]["springs.stiffness"][0] == scene.data["springs"][0]["stiffness"]
    for row in table:
        trial = json.loads(
            (tmp_path / "s" / "trials" / f"trial_{row['index']:05d}" / "result.json").read_text()
        )
        assert row["best_loss"] <= trial["history"][0]["loss"]
        assert row["iterations"] == len(trial["history"]) == 8
    assert (tmp_path / "s" / "convergence.png").stat().st_size > 0


def test_a_sweep_refuses_a_used_folder_and_a_second_design(tmp_path):
    with pytest.raises(DiffsimError, match="one of --grid"):
        diffsim.sweep(SYSID, tmp_path / "a", grid=["springs.stiffness=1:2:2"], starts=2, workers=0, say=None)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "sweep.json").write_text("{}")
    with pytest.raises(DiffsimError, match="holds a sweep"):
        diffsim.sweep(SYSID, tmp_path / "b", grid=["springs.stiffness=1:2:2"], workers=0, say=None)
    with pytest.raises(DiffsimError, match="not a sweep's folder"):
        diffsim.sweep(None, tmp_path / "a", resume=True, say=None)


def test_a_bad_value_fails_its_trial_only(tmp_path):
    table = diffsim.sweep(
        SYSID, tmp_path / "s", grid=["sim.dt=-1:0.0025:2"], steps=STEPS, workers=0, say=None
    )
    assert table["status"] == ["error", "ok"]
    assert "sim.dt" in table.rows[0]["error"] and math.isfinite(table.rows[1]["best_loss"])


@pytest.mark.slow
def test_resume_after_killing_the_driver_runs_only_the_missing_trials(tmp_path):
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "diffsim", "sweep", str(SYSID), "--out", str(out), "--starts", "6"]
    cmd += ["--steps", str(STEPS), "--iters", "15", "--workers", "0"]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.json"
    deadline = time.monotonic() + HANG_TIMEOUT
    while time.monotonic() < deadline and driver.poll() is None:
        if results.is_file() and len(json.loads(results.read_text())["rows"]) >= 2:
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the sweep ended before it could be killed: give its trials more work"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    done = {r["index"]: r for r in json.loads(results.read_text())["rows"]}
    # a trial may have ended after the table's last write: its own result.json counts too
    done.update({int(p.parent.name[6:]): None for p in out.glob("trials/*/result.json")})
    assert 2 <= len(done) < 6
    stamps = {i: (out / "trials" / f"trial_{i:05d}" / "result.json").stat().st_mtime_ns for i in done}
    proc = run_cli("sweep", "--resume", str(out), "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert f"{len(done)} done, {6 - len(done)} to run" in proc.stdout
    ran = {int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("  trial ")}
    assert ran == set(range(6)) - set(done)
    for i, stamp in stamps.items():  # not run again
        assert (out / "trials" / f"trial_{i:05d}" / "result.json").stat().st_mtime_ns == stamp
    rows = json.loads(results.read_text())["rows"]
    assert [r["index"] for r in rows] == list(range(6)) and all(r["status"] == "ok" for r in rows)


def test_without_ray_the_trials_run_here_with_a_note(tmp_path, monkeypatch):
    module = importlib.import_module(
        "diffsim.scale.sweep"
    )  # the module (diffsim.scale.sweep is the function)
    monkeypatch.setattr(module, "ray_available", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    said = []
    table = diffsim.sweep(
        SYSID, tmp_path / "s", grid=["springs.stiffness=80:90:2"], steps=STEPS, say=said.append
    )
    assert table["status"] == ["ok", "ok"]
    assert any(line.startswith("note: Ray is not installed") for line in said)
    assert {w.split(":")[1] for w in table["worker"]} == {str(os.getpid())}
    with pytest.raises(DiffsimError, match="Ray is not installed"):
        diffsim.sweep(SYSID, tmp_path / "t", grid=["springs.stiffness=80:90:2"], workers=2, say=None)


def test_the_command_line_refuses_bad_input_in_one_line(tmp_path):
    for args, message in (
        (["sweep", str(SYSID)], "the output folder is required: --out DIR"),
        (["sweep", "--resume", str(tmp_path / "none")], "not a sweep's folder"),
        (["sweep", str(SYSID), "--out", str(tmp_path / "a"), "--grid", "x=1:2"], "expected NAME=LO:HI:N"),
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("diffsim: error: ") and message in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_optimize_starts_keeps_the_best_fit(tmp_path):
    out = tmp_path / "best"
    proc = run_cli("optimize", str(SYSID), "--out", str(out), "--starts", "2", "--steps", str(STEPS), "--iters", "6",
                   "--workers", "0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    best = json.loads((out / "best.json").read_text())
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert best["best_loss"] == min(r["best_loss"] for r in rows) and best["starts"] == 2
    trial = json.loads((out / "trials" / f"trial_{best['trial']:05d}" / "result.json").read_text())
    assert best["params"] == trial["params"]
    assert f"best of 2 fits: trial {best['trial']}" in proc.stdout
