"""Every example in examples/ runs in its short mode (the examples document what a short mode is) and, where the
short mode can show it, reaches its goal (Newton's test_final pattern): each example writes result.json, and GOALS
below states what it must show.

`make test` runs the walker example; the others (each compiles its own system in a subprocess) run in
`make test-slow`.
"""

import importlib.util
import json
import os
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
    "mpm_sysid.py": (["--iters", "6", "--steps", "40"], "loss.png"),
    "smoke_target2d.py": (["--size", "32", "--iters", "2"], "density_after.png"),
    "smoke_plume3d.py": (["--steps", "3"], "density_end.png"),
    "billiards.py": (["--iters", "2", "--steps", "100"], "shots.png"),
    "rigid_walker2d.py": (["--iters", "2", "--steps", "60"], "progress.png"),
    "rigid_sysid.py": (["--iters", "6", "--steps", "200"], "trajectory.png"),
    "quadruped3d.py": (["--iters", "2", "--steps", "100"], "before_after.png"),
    "torch_walker2d.py": (["--iters", "2", "--steps", "60"], None),
    "torch_sysid.py": (["--iters", "2"], None),
    "jax_sysid.py": (["--iters", "3"], None),
    "tf_sysid.py": (["--iters", "3"], None),
}
#: the framework an example needs (`framework_or_skip`: a skip, or a failure in CI)
FRAMEWORK = {
    "torch_walker2d.py": "torch",
    "torch_sysid.py": "torch",
    "jax_sysid.py": "optax",
    "tf_sysid.py": "tensorflow",
}


def framework_or_skip(module: str) -> None:
    """Skip an example whose framework is not installed (with DIFFSIM_REQUIRE_INTEROP=1, as in CI, fail), without
    importing it here: the example runs in a subprocess, and TensorFlow loaded in this test process would abort
    later tests that render with Taichi's Vulkan GGUI (docs/interop.md)."""
    if importlib.util.find_spec(module) is not None:
        return
    if os.environ.get("DIFFSIM_REQUIRE_INTEROP") == "1":
        pytest.fail(f"DIFFSIM_REQUIRE_INTEROP=1 but {module} is not installed (make install-extras)")
    pytest.skip(f"{module} is not installed")


def initial_and_best_loss(result: dict) -> tuple[float, float]:
    """(loss at the starting parameters, best loss of the fit) from an example's result.json."""
    if "loss_start" in result:
        return result["loss_start"], result["loss_best"]
    if "first_loss" in result:
        return result["first_loss"], result["best_loss"]
    return result["loss_history"][0], min(result["loss_history"])


def fit_lowers_the_loss(result: dict) -> None:
    """The short fit's best loss is at least 1 % (of the starting loss's size) below the starting loss: the
    gradients point downhill and the optimizer takes a step that helps."""
    start, best = initial_and_best_loss(result)
    assert best <= start - 0.01 * abs(start), (start, best)


def sysid_lowers_the_loss_tenfold(result: dict) -> None:
    """Identification from a synthetic measurement: the loss falls to a tenth of its start in six evaluations of
    L-BFGS-B (the loss is zero at the truth; the start is 30 % off)."""
    start, best = initial_and_best_loss(result)
    assert best <= 0.1 * start, (start, best)


def dam_break_front_advances(result: dict) -> None:
    """The released column collapses: its front Z = z / a never moves back and has moved forward by the end."""
    z = result["Z"]
    assert all(b >= a for a, b in zip(z, z[1:], strict=False)), z  # the front never retreats
    assert z[-1] > z[0], z


#: what each example's short mode must show, from its result.json. Left out: billiards.py (its 100-step short mode
#: ends before the cue ball reaches ball 7, so the loss does not depend on the shot: its gradient is zero and Adam
#: leaves the shot as it was), smoke_plume3d.py (no task: it renders).
GOALS = {
    "walker2d.py": fit_lowers_the_loss,
    "rigid_walker2d.py": fit_lowers_the_loss,
    "cloth_throw.py": fit_lowers_the_loss,
    "smoke_target2d.py": fit_lowers_the_loss,
    "quadruped3d.py": fit_lowers_the_loss,
    "mpm_walker2d.py": fit_lowers_the_loss,
    "mpm_throw3d.py": fit_lowers_the_loss,
    "rigid_sysid.py": sysid_lowers_the_loss_tenfold,
    "mpm_sysid.py": sysid_lowers_the_loss_tenfold,
    "mpm_dam_break2d.py": dam_break_front_advances,
    "torch_walker2d.py": fit_lowers_the_loss,
    "torch_sysid.py": sysid_lowers_the_loss_tenfold,
    "jax_sysid.py": fit_lowers_the_loss,
    "tf_sysid.py": fit_lowers_the_loss,
}


def test_every_example_has_a_short_mode():
    assert sorted(p.name for p in (ROOT / "examples").glob("*.py")) == sorted(SHORT)


FAST = {"walker2d.py"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[] if n in FAST else [pytest.mark.slow]) for n in sorted(SHORT)]
)
def test_example_runs(name, tmp_path):
    if name in FRAMEWORK:
        framework_or_skip(FRAMEWORK[name])
    out = tmp_path / "out"
    args, written = SHORT[name]
    cmd = [sys.executable, str(ROOT / "examples" / name), *args, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if written:
        assert (out / written).stat().st_size > 1000, written
    if name in GOALS:
        GOALS[name](json.loads((out / "result.json").read_text()))
