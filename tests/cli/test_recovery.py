"""`diffsim run` then `diffsim optimize --target` recovers the parameters the run was made with, for every system."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli.conftest import SCENES, SYSID, TRUE_DAMPING, TRUE_STIFFNESS, diffsim, ok


def test_run_then_optimize_recovers_stiffness_and_damping(tmp_path, sysid_truth):
    # The scene's springs start at 70 N/m and 0.35 N s/m: 30% below the values sysid_truth ran with.
    start = json.loads(ok(diffsim("params", SYSID, "--json", cwd=tmp_path)).stdout)["params"]
    np.testing.assert_allclose(start["springs.stiffness"]["value"], 0.7 * TRUE_STIFFNESS)
    np.testing.assert_allclose(start["springs.damping"]["value"], 0.7 * TRUE_DAMPING)
    ok(diffsim("optimize", SYSID, "--target", sysid_truth, "--out", "fit", "--no-render", cwd=tmp_path))
    result = json.loads((tmp_path / "fit" / "result.json").read_text())
    assert result["loss"] == "trajectory" and "generated_from" not in result
    stiffness = np.asarray(result["params"]["springs.stiffness"])
    damping = np.asarray(result["params"]["springs.damping"])
    assert np.max(np.abs(stiffness / TRUE_STIFFNESS - 1)) < 0.01, stiffness
    assert np.max(np.abs(damping / TRUE_DAMPING - 1)) < 0.01, damping
    assert result["best_loss"] < 1e-6 * result["loss_history"][0]


#: per system: scene, steps, the true values `diffsim run` simulates with, the parameters fitted, iterations. The
#: scene files start 30 % off the truth; horizons are short, long enough for each parameter to show (cloth's
#: damping needs 150 steps, the box's friction, restitution and mass its first bounces).
RECOVERY = {
    "cloth": (
        "cloth_sysid",
        60,
        {"material.stretch_modulus": 50.0, "material.bending_stiffness": 5e-4},
        20,
    ),
    "cloth-damping": (
        "cloth_sysid",
        150,
        {"material.stretch_modulus": 50.0, "material.bending_stiffness": 5e-4, "damping.stretch": 0.01},
        30,
    ),
    "rigid": (
        "rigid_sysid",
        400,
        {"ground.friction": 0.4, "ground.restitution": 0.5, "bodies.mass": 1.0},
        30,
    ),
    "mpm": ("mpm_sysid", 150, {"materials.honey.viscosity": 5.0, "materials.jelly.youngs_modulus": 5e4}, 20),
    "smoke": ("smoke_sysid", 30, {"buoyancy.density": 2.0, "viscosity": 0.004}, 20),
}
SLOW = {"cloth-damping", "rigid", "mpm", "smoke"}  # over 30 s each on 2 cores


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in RECOVERY]
)
def test_run_then_optimize_target_recovers_each_system(tmp_path, case):
    """`diffsim run SCENE --set <truth>` writes trajectory.npz; `diffsim optimize SCENE --target` it, from the
    scene's own (perturbed) values, recovers the truth: the quantity the system's run writes (positions; smoke's
    density) is compared at the frames the file holds."""
    scene, steps, truth, iters = RECOVERY[case]
    path = SCENES / f"{scene}.toml"
    sets = [a for name, value in truth.items() for a in ("--set", f"{name}={value}")]
    ok(diffsim("run", path, "--steps", steps, *sets, "--out", "truth", "-q", cwd=tmp_path))
    ok(
        diffsim(
            "optimize",
            path,
            "--steps",
            steps,
            "--target",
            tmp_path / "truth" / "trajectory.npz",
            "--fit",
            *truth,
            "--iters",
            iters,
            "--out",
            "fit",
            "--no-render",
            "-q",
            cwd=tmp_path,
        )
    )
    result = json.loads((tmp_path / "fit" / "result.json").read_text())
    assert result["loss"] == ("density" if scene.startswith("smoke") else "trajectory")
    assert result["best_loss"] < 1e-8 * result["loss_history"][0]
    for name, value in truth.items():
        start = np.asarray(result["initial_params"][name])
        fitted = np.asarray(result["params"][name])
        assert np.all(np.abs(start / value - 1) > 0.2), (name, start)  # the fit starts off the truth
        assert np.max(np.abs(fitted / value - 1)) < 1e-4, (name, fitted)
