"""diffsim.jax: `simulate` and `Step` under jax.jit against finite differences (jax.test_util.check_grads, f64),
with and without batch, full and checkpointed storage; and against diffsim's own value_and_grad."""

import numpy as np
import pytest

import diffsim
from tests.conftest import use
from tests.interop.scenes import OUTPUTS, SMOKE_STEP, framework_or_skip, simulation

jax = framework_or_skip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

dj = pytest.importorskip("diffsim.jax")

#: finite-difference step of check_grads (its tolerance for f64 is its default, 1e-5 relative)
EPS = 1e-6
QUICK: set = set()  # make test runs the equality checks below; the gradchecks are slow (make test-slow)


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
        for kind in ("springs", "rigid", "smoke")
        for batch in (1, 2)
        for storage in ("full", "checkpointed")
    ]


@pytest.mark.parametrize("kind,batch,storage", cases())
def test_simulate_check_grads(kind, batch, storage):
    sim, names = simulation(kind, batch, storage)
    outputs = OUTPUTS[kind]
    f = jax.jit(lambda *v: dj.simulate(sim, dict(zip(names, v, strict=True)), outputs=outputs))
    values = tuple(jnp.asarray(sim.system.params[n].numpy()) for n in names)
    check_grads(f, values, order=1, modes=["rev"], eps=EPS)


@pytest.mark.parametrize("kind,batch,storage", cases(step=True))
def test_step_check_grads_through_scan(kind, batch, storage):
    """Three steps in jax.lax.scan under jit, w.r.t. the initial state and the action."""
    sim, _ = simulation(kind, batch, storage)
    step = dj.Step(sim.system)
    action = jnp.full((batch, step.n_actions), 0.2)

    def rollout(s, a):
        def body(s, t):
            return step(s, a * (1 + 0.5 * t) if step.n_actions else None, t), None

        return jax.lax.scan(body, s, jnp.arange(3))[0]

    check_grads(jax.jit(rollout), (step.initial_state(), action), order=1, modes=["rev"], eps=EPS)


def test_jax_loss_equals_value_and_grad():
    """A PointLoss over every frame written in JAX on the trajectory: value_and_grad's gradient to 1e-12 (f64)."""
    sim, names = simulation("springs", 2, "checkpointed")
    x0 = sim.system.params["initial.position"].numpy()
    target = x0[None] + 0.02 * np.random.default_rng(4).normal(size=(sim.steps, *x0.shape))
    sim.set_loss(diffsim.PointLoss(target, every=1))
    value, grads = sim.value_and_grad(names)
    sim.set_loss(None)

    def loss(*v):
        x = dj.simulate(sim, dict(zip(names, v, strict=True)), outputs=("x",))["x"]
        return jnp.sum((x[1:] - target[:, None]) ** 2) / (sim.steps * target.shape[1])

    mine, g = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(
        *(jnp.asarray(sim.system.params[n].numpy()) for n in names)
    )
    assert abs(float(mine) - value) <= 1e-12 * abs(value)
    for name, gi in zip(names, g, strict=True):
        assert np.abs(np.asarray(gi) - grads[name]).max() <= 1e-12 * np.abs(grads[name]).max(), name


def test_vmap_runs_one_rollout_per_element():
    sim, names = simulation("springs", 1, "full")
    k = jnp.asarray(sim.system.params["springs.stiffness"].numpy())
    ks = jnp.stack([k, 1.5 * k])
    f = lambda s: dj.simulate(sim, {"springs.stiffness": s}, outputs=("x",))["x"][-1].sum()
    np.testing.assert_array_equal(np.asarray(jax.vmap(f)(ks)), [float(f(ks[0])), float(f(ks[1]))])
    g = jax.vmap(jax.grad(f))(ks)
    np.testing.assert_array_equal(np.asarray(g[1]), np.asarray(jax.grad(f)(ks[1])))
