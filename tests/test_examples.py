"""Every example in examples/ runs in its short mode (the examples document what a short mode is).

`make test` runs the walker example; the others (each compiles its own system in a subprocess) run in
`make test-slow`.
"""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: each example's short-mode arguments, and a file it must write
SHORT = {
    "cloth_throw.py": (["--iters", "2", "--steps", "60"], "after.gif"),
    "walker2d.py": (["--iters", "2", "--steps", "60"], "after.gif"),
    "mpm_walker2d.py": (["--iters", "2", "--steps", "60"], "after.gif"),
    "mpm_throw3d.py": (["--iters", "2", "--steps", "60"], "after.gif"),
    "mpm_dam_break2d.py": (["--steps", "100"], "front.png"),
    "mpm_sysid.py": (["--iters", "2", "--steps", "40"], "loss.png"),
    "smoke_target2d.py": (["--size", "32", "--iters", "2"], "density_after.png"),
    "smoke_plume3d.py": (["--steps", "3"], "density_end.png"),
    "billiards.py": (["--iters", "2", "--steps", "100"], "shots.png"),
    "rigid_walker2d.py": (["--iters", "2", "--steps", "60"], "progress.png"),
    "rigid_sysid.py": (["--iters", "2", "--steps", "200"], "trajectory.png"),
    "quadruped3d.py": (["--iters", "2", "--steps", "100"], "before_after.png"),
}


def test_every_example_has_a_short_mode():
    assert sorted(p.name for p in (ROOT / "examples").glob("*.py")) == sorted(SHORT)


FAST = {"walker2d.py"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[] if n in FAST else [pytest.mark.slow]) for n in sorted(SHORT)]
)
def test_example_runs(name, tmp_path):
    out = tmp_path / "out"
    args, written = SHORT[name]
    cmd = [sys.executable, str(ROOT / "examples" / name), *args, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if written:
        assert (out / written).stat().st_size > 1000, written
