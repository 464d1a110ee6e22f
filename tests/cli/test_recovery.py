"""`diffsim run` then `diffsim optimize --target` recovers the parameters the run was made with."""

from __future__ import annotations

import json

import numpy as np

from tests.cli.conftest import SYSID, TRUE_DAMPING, TRUE_STIFFNESS, diffsim, ok


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
