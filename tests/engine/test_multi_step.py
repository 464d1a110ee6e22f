"""The forward pass launches the steps between two loss frames as one kernel (`System.multi_step_launcher`, for
systems whose loops run serially on the CPU). One launch per step must give the same rollout, loss and gradients:
checked on the benchmark scenes of the mass-spring and rigid systems (the cloth's is in tests/cloth)."""

import numpy as np
import pytest

from diffsim import bench
from tests.conftest import use


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


@pytest.mark.parametrize(
    "case",
    [
        "billiards",
        pytest.param("walker2d", marks=pytest.mark.slow),
        pytest.param("rigid_walker2d", marks=pytest.mark.slow),
    ],
)
def test_steps_launched_together_equal_steps_launched_one_by_one(case):
    sim, _ = bench.CASES[case]()
    assert sim._steps is not None
    value, grads = sim.value_and_grad()
    x = sim.trajectory(["x"])["x"]
    sim._steps = None  # one launch per step
    value1, grads1 = sim.value_and_grad()
    np.testing.assert_allclose(sim.trajectory(["x"])["x"], x, rtol=0, atol=1e-12)
    assert value1 == pytest.approx(value, rel=1e-12, abs=1e-14)
    for name, g in grads.items():
        np.testing.assert_allclose(grads1[name], g, rtol=1e-9, atol=1e-12, err_msg=name)
