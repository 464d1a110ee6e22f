"""diffsim.torch: `simulate` and `Step` against finite differences (torch.autograd.gradcheck, f64) on a small scene of
every system, with and without batch, full and checkpointed storage; and against diffsim's own value_and_grad."""

import numpy as np
import pytest

import diffsim
from tests.conftest import use
from tests.interop.scenes import OUTPUTS, SMOKE_STEP, SYSTEMS, framework_or_skip, simulation

torch = framework_or_skip("torch")
dt = pytest.importorskip("diffsim.torch")

#: gradcheck's finite-difference step and tolerances (f64 rollouts of a few steps: central differences agree to
#: ~1e-9 relative; contact kinks are not crossed at this step)
CHECK = dict(eps=1e-6, atol=1e-8, rtol=1e-5, fast_mode=True)

#: the quick cases (every other one is marked slow)
QUICK = {("springs", 2, "checkpointed")}


@pytest.fixture(autouse=True)
def f64():
    use(
        "cpu", "f64"
    )  # per test: each builds its own systems, and use() starts afresh near Taichi's field limit


def cases(step: bool = False):
    return [
        pytest.param(
            kind,
            batch,
            storage,
            marks=(() if (kind, batch, storage) in QUICK else (pytest.mark.slow,))
            + ((SMOKE_STEP,) if step and kind == "smoke" else ()),
            id=f"{kind}-b{batch}-{storage}",
        )
        for kind in SYSTEMS
        for batch in (1, 2)
        for storage in ("full", "checkpointed")
    ]


def param_tensors(sim, names):
    return [
        torch.tensor(sim.system.params[n].numpy(), dtype=torch.float64, requires_grad=True) for n in names
    ]


@pytest.mark.parametrize("kind,batch,storage", cases())
def test_simulate_gradcheck(kind, batch, storage):
    sim, names = simulation(kind, batch, storage)
    outputs = OUTPUTS[kind]

    def f(*values):
        out = dt.simulate(sim, dict(zip(names, values, strict=True)), outputs=outputs)
        return tuple(out[n] for n in outputs)

    assert torch.autograd.gradcheck(f, tuple(param_tensors(sim, names)), **CHECK)


@pytest.mark.parametrize("kind,batch,storage", cases(step=True))
def test_step_gradcheck(kind, batch, storage):
    """Three steps through `Step` (backpropagation through time), w.r.t. the initial state and the actions."""
    sim, _ = simulation(kind, batch, storage)
    step = dt.Step(sim.system)
    names = step.state_names
    s0 = step.initial_state()
    inputs = [s0[n].clone().requires_grad_(True) for n in names]
    if step.n_actions:
        inputs.append(torch.full((batch, step.n_actions), 0.2, dtype=torch.float64, requires_grad=True))

    def f(*xs):
        s = dict(zip(names, xs, strict=False))
        for t in range(3):
            s = step(s, xs[-1] * (1 + 0.5 * t) if step.n_actions else None, t)
        return tuple(s.values())

    assert torch.autograd.gradcheck(f, tuple(inputs), **CHECK)


def test_steps_equal_the_rollout():
    """Step after step from the initial state gives the rollout's trajectory, bit for bit."""
    sim, _ = simulation("springs", 2, "full")
    sim.system.params["controller.actions"].set(np.full((2, 4, 2), 0.3))
    sim.forward()
    ref = sim.trajectory(["x"])["x"]
    step = dt.Step(sim.system)
    s = step.initial_state()
    for t in range(sim.steps):
        s = step(s, torch.full((2, 2), 0.3, dtype=torch.float64), t)
        np.testing.assert_array_equal(s["x"].numpy(), ref[t + 1])


@pytest.mark.parametrize("storage", ["full", "checkpointed"])
@pytest.mark.parametrize("kind", ["springs", pytest.param("rigid", marks=pytest.mark.slow)])
def test_torch_loss_equals_value_and_grad(kind, storage):
    """A built-in PointLoss over every frame, written as a torch loss on `simulate`'s trajectory, has the gradient of
    diffsim's value_and_grad to 1e-12 relative (f64)."""
    sim, names = simulation(kind, 2, storage)
    target = sim.system.params["initial.position"].numpy()
    rng = np.random.default_rng(4)
    target = target[None] + 0.02 * rng.normal(size=(sim.steps, *target.shape))
    loss = diffsim.PointLoss(target, every=1)
    sim.set_loss(loss)
    value, grads = sim.value_and_grad(names)
    sim.set_loss(None)
    params = param_tensors(sim, names)
    x = dt.simulate(sim, dict(zip(names, params, strict=True)), outputs=("x",))["x"]
    n_points = target.shape[1]
    mine = ((x[1:, :, :, :] - torch.from_numpy(target)[:, None]) ** 2).sum() / (sim.steps * n_points)
    mine.backward()
    assert abs(mine.item() - value) <= 1e-12 * abs(value)
    for name, p in zip(names, params, strict=True):
        scale = np.abs(grads[name]).max()
        assert np.abs(p.grad.numpy() - grads[name]).max() <= 1e-12 * scale, name


def test_loss_output_and_its_gradient():
    """The per-copy "loss" output is the simulation's loss; its gradient (a cotangent per copy) is
    value_and_grad's, scaled per copy."""
    sim, names = simulation("springs", 2, "checkpointed", loss=None)
    sim.set_loss(diffsim.CenterOfMassLoss(direction=[1.0, 0.0]))
    value, grads = sim.value_and_grad(names)
    params = param_tensors(sim, names)
    out = dt.simulate(sim, dict(zip(names, params, strict=True)))
    assert list(out) == ["loss"]
    assert out["loss"].shape == (2,)
    assert abs(float(out["loss"].sum()) - value) <= 1e-12 * abs(value)
    out["loss"].sum().backward()
    for name, p in zip(names, params, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), grads[name], rtol=1e-12, atol=0)


def test_bad_input_is_a_clear_error():
    sim, _ = simulation("springs", 1, "full")
    with pytest.raises(diffsim.DiffsimError, match="unknown state quantity 'q'"):
        dt.simulate(sim, {}, outputs=("q",))
    with pytest.raises(diffsim.DiffsimError, match="nothing to return"):
        dt.simulate(sim, {"springs.stiffness": torch.ones(6)})
    with pytest.raises(diffsim.DiffsimError, match="unknown parameter"):
        dt.simulate(sim, {"springs.stifness": torch.ones(6)}, outputs=("x",))
    step = dt.Step(sim.system)
    s = step.initial_state()
    with pytest.raises(diffsim.DiffsimError, match="expected \\(1, 2\\)"):
        step(s, torch.zeros(1, 3))


def test_backward_after_another_forward_reruns_its_own():
    """A backward pass after the simulation ran with other values (here the user's own forward) re-runs the
    rollout it differentiates: the gradient is that of its own parameter values."""
    sim, names = simulation("springs", 1, "full")
    k = sim.system.params["springs.stiffness"].numpy()
    ref = torch.tensor(k, requires_grad=True)
    dt.simulate(sim, {"springs.stiffness": ref}, outputs=("x",))["x"].sum().backward()
    p = torch.tensor(k, requires_grad=True)
    x = dt.simulate(sim, {"springs.stiffness": p}, outputs=("x",))["x"]
    sim.system.params["springs.stiffness"].set(1.5 * k)
    sim.forward()
    x.sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), ref.grad.numpy())
