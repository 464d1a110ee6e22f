"""Helpers for the command-line tests: they run the real `diffsim` command in a subprocess."""

from __future__ import annotations

import os
import re
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


#: a hang detector, not a speed check: a scene that takes 20 s alone takes minutes at load 10
HANG_TIMEOUT = 1800

#: a line of Taichi's own log (spdlog's "[%L %D %X.%e %t] %v"), such as the warning Taichi prints when another
#: process holds the kernel cache's lock: it comes from sharing the cache with other test processes, not from diffsim
TAICHI_LOG = re.compile(r"^\[[TDIWEC] \d\d/\d\d/\d\d \d\d:\d\d:\d\d\.\d+ \d+\] ")


def diffsim(
    *args: str,
    cwd: Path | None = None,
    timeout: float = HANG_TIMEOUT,
    env: dict | None = None,
    script: bool = False,
    taichi_log: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``python -m diffsim ARGS`` (or the console script, with script=True); capture text output. Taichi's own
    log lines are dropped from stderr unless `taichi_log`."""
    exe = [str(Path(sys.executable).parent / "diffsim")] if script else [sys.executable, "-m", "diffsim"]
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [*exe, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )
    if not taichi_log:
        proc.stderr = "".join(line for line in proc.stderr.splitlines(True) if not TAICHI_LOG.match(line))
    return proc


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
