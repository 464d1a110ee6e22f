"""CMA-ES (optim/cma.py): a gradient-free fit within the parameters' ranges, reproducible from its seed, and an
L-BFGS-B polish from its best point."""

import math

import numpy as np
import pytest

import diffsim
from diffsim.errors import DiffsimError
from diffsim.optim.cma import CMAES
from diffsim.scene import load_scene
from tests.cli.conftest import SYSID
from tests.scale.conftest import require


@pytest.fixture(scope="module")
def sysid():
    """springs_sysid, 60 steps: (sim, fitted names, the starting values)."""
    require("cma")
    scene = load_scene(SYSID, steps=60)
    scene.init_backend()
    _, sim, task = scene.build(grads="task")
    return sim, task.fit, sim.system.params.to_dict()


@pytest.fixture
def fresh(sysid):
    sim, names, start = sysid
    sim.system.params.load_dict(start)
    return sim, names


def test_cma_lowers_the_loss_and_repeats_with_its_seed(fresh):
    sim, names = fresh
    first = sim.forward()
    runs = []
    for _ in range(2):
        sim.system.params.load_dict(fresh_start := sim.system.params.to_dict(names))
        runs.append(diffsim.fit(sim, names, CMAES(sigma=0.2, seed=3), iters=60, progress=False))
        sim.system.params.load_dict(fresh_start)
    a, b = runs
    assert a.best_loss < 0.5 * first
    assert a.loss_history == b.loss_history  # the same points, bit for bit
    ok = [h["loss"] for h in a.history if h["status"] == "ok"]
    assert a.best_loss == min(ok) and a.iterations == 60
    assert all(math.isnan(h["grad_norm"]) for h in a.history)  # no gradient was computed


def test_the_polish_continues_from_the_best_point_found(fresh):
    sim, names = fresh
    start = sim.system.params.to_dict(names)
    search = diffsim.fit(sim, names, CMAES(sigma=0.2, seed=3), iters=40, progress=False)
    sim.system.params.load_dict(start)
    polished = diffsim.fit(sim, names, CMAES(sigma=0.2, seed=3, polish=20), iters=60, progress=False)
    assert polished.loss_history[:40] == search.loss_history  # the same search, then the polish
    assert polished.history[40]["loss"] == search.best_loss  # L-BFGS-B's first point: the search's best
    assert polished.best_loss < 1e-3 * search.best_loss
    assert [h["iteration"] for h in polished.history] == list(range(len(polished.history)))
    np.testing.assert_array_equal(sim.forward(), polished.best_loss)  # left at the best point


def test_a_scene_selects_cma_and_bad_settings_are_refused():
    require("cma")
    scene = load_scene(
        SYSID, ["task.optimizer.name=cma", "task.optimizer.sigma=0.1", "task.optimizer.polish=5"]
    )
    assert scene.data["task"]["optimizer"] == {
        "name": "cma",
        "sigma": 0.1,
        "popsize": None,
        "polish": 5,
        "seed": 1,
    }
    with pytest.raises(DiffsimError, match="must be > 0"):
        CMAES(sigma=0)
    with pytest.raises(DiffsimError, match="cannot be resumed"):
        diffsim.fit(object.__new__(_FakeSim), None, CMAES(), resume="x")


class _FakeSim:
    loss = True

    class system:  # noqa: N801
        class params:  # noqa: N801
            @staticmethod
            def with_grad(_names):
                return [type("P", (), {"name": "p"})]


@pytest.mark.slow
def test_cma_then_lbfgs_solves_billiards_where_the_gradient_is_zero():
    """The cue shot straight across the table misses the rack: ball 7 never moves, the loss's gradient is exactly
    zero and gradient descent cannot start. CMA-ES's population finds shots that reach the rack (a flat first
    generation widens its search), L-BFGS-B polishes the best (benchmarks/billiards_cma.py)."""
    require("cma")
    scene = load_scene("billiards", ["initial.cue.velocity=0,1.6"], fit=["initial.cue.velocity"])
    scene.init_backend()
    _, sim, task = scene.build(grads="task")
    start = sim.forward()
    sim.backward()
    assert np.all(sim.system.params.grad_flat(task.fit) == 0.0)
    result = diffsim.fit(sim, task.fit, CMAES(sigma=0.5, polish=40, seed=1), iters=160, progress=False)
    assert result.best_loss < 1e-4 * start
    sim.forward()
    ball7 = sim.trajectory()["x"][-1, 0, 7]
    np.testing.assert_allclose(ball7, np.reshape(task.target, -1), atol=0.01)  # within 1 cm of the target
