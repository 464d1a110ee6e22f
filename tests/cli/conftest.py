"""Helpers for the command-line tests: they run the real `diffsim` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENES = ROOT / "scenes"
SYSID = SCENES / "springs_sysid.toml"

#: the values `sysid_truth` simulates with (the scene file starts 30% below them)
TRUE_STIFFNESS = 100.0
TRUE_DAMPING = 0.5


def diffsim(
    *args: str, cwd: Path | None = None, timeout: float = 240, env: dict | None = None, script: bool = False
) -> subprocess.CompletedProcess:
    """Run ``python -m diffsim ARGS`` (or the console script, with script=True); capture text output."""
    exe = [str(Path(sys.executable).parent / "diffsim")] if script else [sys.executable, "-m", "diffsim"]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*exe, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="session")
def sysid_truth(tmp_path_factory) -> Path:
    """`diffsim run` of the system-identification scene with the true values: its trajectory.npz."""
    out = tmp_path_factory.mktemp("truth")
    ok(
        diffsim(
            "run",
            SYSID,
            "--out",
            out,
            "--set",
            f"springs.stiffness={TRUE_STIFFNESS}",
            "--set",
            f"springs.damping={TRUE_DAMPING}",
        )
    )
    return out / "trajectory.npz"
