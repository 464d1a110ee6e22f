"""Unstable simulations on the command line: a clear error for `run`, a fit that survives for `optimize`."""

from __future__ import annotations

import csv
import json

import pytest

from tests.cli.conftest import SYSID, diffsim


def test_an_enormous_dashpot_stops_the_run_in_its_first_frames(tmp_path):
    # 1e9 N s/m on 0.05 kg: stable only for dt < 2 m_red / c = 1e-10 s. Without the damping in the estimate and the
    # divergence check, five steps reached 2e34 m and exited 0.
    proc = diffsim(
        "run",
        SYSID,
        "--out",
        tmp_path / "o",
        "--set",
        "springs[0].damping=1e9",
        "--set",
        "sim.steps=5",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    warning, error = proc.stderr.strip().splitlines()
    assert warning == (
        f"diffsim: warning: {SYSID}: dt=0.0025 s is above the stability limit of semi-implicit Euler for spring 0 "
        "(stiffness 70 N/m, damping 1e+09 N s/m): dt < 1e-10 s ((omega dt)^2 + 2 c dt / m < 4); expect a blow-up"
    )
    assert error.startswith(f"diffsim: error: {SYSID}: diverging x at frame 2 (|x| = ")
    assert error.endswith(
        "dt=0.0025 s; spring 0 (stiffness 70 N/m, damping 1e+09 N s/m) needs dt < 1e-10 s ((omega dt)^2 + 2 c dt / m"
        " < 4))"
    )
    assert not (tmp_path / "o" / "trajectory.npz").exists()


def test_optimize_whose_every_step_explodes_writes_the_best_and_exits_3(tmp_path):
    # Adam at a rate of 1e4 on log(stiffness) and log(damping): every trial, halved ten times, still blows up.
    proc = diffsim(
        "optimize",
        SYSID,
        "--out",
        "o",
        "--optimizer",
        "adam",
        "--lr",
        "1e4",
        "--iters",
        "30",
        "--steps",
        "100",
        "--no-render",
        "--quiet",
        cwd=tmp_path,
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "diffsim: fit stopped, unstable: 10 evaluations in a row were rejected, the last at "
        "iteration 10: diverging x at frame "
    )
    result = json.loads((tmp_path / "o" / "result.json").read_text())
    assert result["stopped"] == "unstable" and result["stop_message"] in last
    assert result["best_iteration"] == 0 and result["rejected"] == 10 and result["iterations"] == 11
    assert result["best_loss"] == result["final_loss"] == result["loss_history"][0]
    assert result["loss_history"][1:] == [None] * 10
    for name, start in result["initial_params"].items():  # the start (through exp(log(value)): to rounding)
        assert result["params"][name] == pytest.approx(start, rel=1e-14)
    with open(tmp_path / "o" / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["ok"] + ["rejected"] * 10
    assert rows[0]["cause"] == "" and all(r["cause"] for r in rows[1:])
    assert all(r["loss"] == "nan" for r in rows[1:])
