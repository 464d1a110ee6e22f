"""Batches and parameter recovery: the optimization layer solving real tasks."""

import numpy as np
import pytest

import diffsim
from tests.conftest import use
from tests.springs.bodies import square


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


def hanging_chain(stiffness=60.0, damping=0.4):
    """Three masses hanging from a pinned point: a system whose motion depends on stiffness and damping."""
    model = diffsim.SpringModel(dim=2)
    model.add_particle([0.0, 1.0], pinned=True)
    for k in range(1, 4):
        model.add_particle([0.12 * k, 1.0 - 0.05 * k], mass=0.1)
        model.add_spring(k - 1, k, stiffness=stiffness, damping=damping, rest_length=0.1)
    return model


def test_parameter_recovery_stiffness_and_damping_within_one_percent():
    true_k, true_c = 60.0, 0.4
    system = diffsim.SpringSystem(hanging_chain(true_k, true_c), dt=2e-3, ground=None)
    steps = 300
    sim = diffsim.Simulation(system, steps)
    sim.run()
    target = sim.trajectory(every=5)["x"][1:, 0]  # frames 5, 10, ..., 300
    # start 30 % off in opposite directions
    system.params["springs.stiffness"].set(true_k * 1.3)
    system.params["springs.damping"].set(true_c * 0.7)
    sim.set_loss(diffsim.PointLoss(target, every=5))
    result = diffsim.fit(
        sim, ["springs.stiffness", "springs.damping"], optimizer="lbfgs", iters=60, progress=False
    )
    k = system.params["springs.stiffness"].numpy()
    c = system.params["springs.damping"].numpy()
    assert np.abs(k / true_k - 1).max() < 0.01, k
    assert np.abs(c / true_c - 1).max() < 0.01, c
    assert result.best_loss < 1e-3 * result.history[0]["loss"]


def test_adam_and_sgd_reduce_the_loss():
    for opt in (diffsim.Adam(lr=0.05), diffsim.SGD(lr=0.5, momentum=0.5, clip_norm=10.0)):
        system = diffsim.SpringSystem(hanging_chain(), dt=2e-3, ground=None)
        sim = diffsim.Simulation(
            system,
            100,
            loss=diffsim.FinalPositionLoss([[0.1, 0.85], [0.2, 0.75], [0.3, 0.7]], points=[1, 2, 3]),
        )
        result = diffsim.fit(sim, ["springs.rest_length"], optimizer=opt, iters=15, progress=False)
        assert result.best_loss < 0.5 * result.history[0]["loss"], opt.name


def test_fit_tracks_best_stops_early_and_resumes(tmp_path):
    system = diffsim.SpringSystem(hanging_chain(), dt=2e-3, ground=None)
    sim = diffsim.Simulation(system, 50, loss=diffsim.FinalPositionLoss([[0.3, 0.7]], points=[3]))
    seen = []
    result = diffsim.fit(
        sim,
        ["springs.rest_length"],
        optimizer=diffsim.Adam(lr=0.02),
        iters=200,
        tol=1e-9,
        callback=lambda it, rec, s: seen.append(rec["loss"]) or False,
        progress=False,
    )
    assert result.stopped in ("tolerance", "converged")
    assert result.iterations < 200 and len(seen) == result.iterations
    assert result.best_loss == min(result.loss_history)
    np.testing.assert_allclose(
        system.params["springs.rest_length"].numpy(), result.params["springs.rest_length"]
    )
    path = tmp_path / "params.json"
    system.params.save(str(path), ["springs.rest_length"])
    system.params["springs.rest_length"].set(0.1)
    again = diffsim.fit(sim, ["springs.rest_length"], iters=1, resume=str(path), progress=False)
    assert abs(again.history[0]["loss"] - result.best_loss) < 1e-12


@pytest.mark.slow  # compiles four systems
def test_batch_copies_match_separate_runs():
    ks = [300.0, 450.0, 700.0]
    vx = [0.2, 0.5, 0.9]
    ctrl = lambda b: diffsim.Periodic(2, frequency=2.0, seed=3, per_batch=b)  # noqa: E731
    batched = diffsim.SpringSystem(
        square(actuated=True),
        dt=2e-3,
        ground=0.0,
        friction=0.5,
        contact_stiffness=3000.0,
        controller=ctrl(True),
        batch=3,
        per_batch=("springs.stiffness", "initial.velocity"),
    )
    k_all = np.repeat(np.asarray(ks)[:, None], 6, axis=1)
    batched.params["springs.stiffness"].set(k_all)
    v0 = batched.params["initial.velocity"].numpy()
    v0[:, :, 0] = np.asarray(vx)[:, None]
    batched.params["initial.velocity"].set(v0)
    loss = diffsim.CenterOfMassLoss(direction=(1.0, 0.0))
    sim = diffsim.Simulation(batched, 150, loss=loss)
    _, grads = sim.value_and_grad()
    xb = sim.trajectory()["x"]
    per_copy_loss = sim.loss_value.copy()
    for b in range(3):
        single = diffsim.SpringSystem(
            square(actuated=True),
            dt=2e-3,
            ground=0.0,
            friction=0.5,
            contact_stiffness=3000.0,
            controller=ctrl(False),
        )
        single.params["springs.stiffness"].set(k_all[b])
        v = single.params["initial.velocity"].numpy()
        v[:, 0] = vx[b]
        single.params["initial.velocity"].set(v)
        s = diffsim.Simulation(single, 150, loss=diffsim.CenterOfMassLoss(direction=(1.0, 0.0)))
        lb, gb = s.value_and_grad()
        np.testing.assert_allclose(s.trajectory()["x"][:, 0], xb[:, b], rtol=0, atol=1e-12)
        assert abs(lb - per_copy_loss[b]) < 1e-12
        np.testing.assert_allclose(
            grads["springs.stiffness"][b], gb["springs.stiffness"], rtol=1e-10, atol=1e-14
        )
        np.testing.assert_allclose(
            grads["controller.weights"][b], gb["controller.weights"], rtol=1e-10, atol=1e-14
        )


def test_no_recompilation_or_reallocation_between_iterations():
    """Allocation happens once per (system, horizon); optimizer iterations reuse fields and compiled kernels."""
    import taichi as ti

    system = diffsim.SpringSystem(
        square(actuated=True),
        dt=2e-3,
        ground=0.0,
        contact_stiffness=3000.0,
        controller=diffsim.MLP(2, hidden=(4,), n_phases=1),
    )
    sim = diffsim.Simulation(
        system,
        30,
        loss=diffsim.CenterOfMassLoss(direction=(1.0, 0.0)),
        storage="checkpointed",
        checkpoint_every=7,
    )
    diffsim.fit(sim, iters=1, progress=False)
    step = type(system)._step
    kernels = (step._primal, step._adjoint)
    compiled = [len(k.compiled_kernels) for k in kernels]
    fields_before = id(sim.state.x), id(sim.snapshots.x)
    n_trees = ti.lang.impl.get_runtime().prog.get_snode_tree_size()
    diffsim.fit(sim, iters=3, progress=False)
    assert [len(k.compiled_kernels) for k in kernels] == compiled
    assert (id(sim.state.x), id(sim.snapshots.x)) == fields_before
    assert ti.lang.impl.get_runtime().prog.get_snode_tree_size() == n_trees
