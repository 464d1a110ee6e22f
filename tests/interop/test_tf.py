"""diffsim.tf: `simulate` and `Step` inside tf.function against finite differences (tf.test.compute_gradient, f64),
with and without batch, full and checkpointed storage; and against diffsim's own value_and_grad."""

import numpy as np
import pytest

import diffsim
from tests.conftest import use
from tests.interop.scenes import OUTPUTS, SMOKE_STEP, framework_or_skip, simulation

# Taichi's Vulkan probe must run before TensorFlow loads (see diffsim/tf.py), which importing diffsim.tf does
diffsim.runtime.available_archs()
framework_or_skip("tensorflow")
dtf = pytest.importorskip("diffsim.tf")
import tensorflow as tf  # noqa: E402

#: finite-difference step of compute_gradient and the relative agreement asked of the Jacobians
DELTA = 1e-6
TOLERANCE = 1e-5
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


def assert_jacobians_agree(f, xs):
    theoretical, numerical = tf.test.compute_gradient(f, xs, delta=DELTA)
    for a, b in zip(theoretical, numerical, strict=True):
        scale = max(np.abs(a).max(), 1e-300)
        assert np.abs(a - b).max() <= TOLERANCE * scale, (np.abs(a - b).max(), scale)


@pytest.mark.parametrize("kind,batch,storage", cases())
def test_simulate_compute_gradient(kind, batch, storage):
    sim, names = simulation(kind, batch, storage)
    outputs = OUTPUTS[kind]

    # compute_gradient's step is absolute: each parameter is probed in units of max(1, |its value|) (a joint
    # stiffness of 2e4 N/m next to a viscosity of 0.002), x = x0 + scale * u around u = 0
    x0 = [sim.system.params[n].numpy() for n in names]
    scales = [tf.constant(np.maximum(np.abs(x), 1.0)) for x in x0]

    @tf.function
    def f(*u):
        v = [x + sc * ui for x, sc, ui in zip(x0, scales, u, strict=True)]
        out = dtf.simulate(sim, dict(zip(names, v, strict=True)), outputs=outputs)
        # one output tensor: a fixed random projection of every output
        return tf.add_n([tf.reduce_sum(out[n] * weights[n]) for n in outputs])

    rng = np.random.default_rng(0)
    shapes = dtf._rollout(sim, tuple(names), tuple(outputs)).shapes()
    weights = {n: tf.constant(rng.normal(size=shapes[n])) for n in outputs}
    assert_jacobians_agree(f, [tf.zeros(np.shape(x), tf.float64) for x in x0])


@pytest.mark.parametrize("kind,batch,storage", cases(step=True))
def test_step_compute_gradient(kind, batch, storage):
    """Three steps in tf.function, w.r.t. the initial state and the action."""
    sim, _ = simulation(kind, batch, storage)
    step = dtf.Step(sim.system)
    names = step.state_names
    s0 = step.initial_state()
    action = tf.fill((batch, max(step.n_actions, 1)), tf.constant(0.2, tf.float64))

    @tf.function
    def f(a, *xs):
        s = dict(zip(names, xs, strict=True))
        for t in range(3):
            s = step(s, a * (1 + 0.5 * t) if step.n_actions else None, t)
        return tf.concat([tf.reshape(s[n], [-1]) for n in names], 0)

    assert_jacobians_agree(f, [action, *(s0[n] for n in names)])


def test_tf_loss_equals_value_and_grad():
    """A PointLoss over every frame written in TensorFlow on the trajectory: value_and_grad's gradient to 1e-12."""
    sim, names = simulation("springs", 2, "checkpointed")
    x0 = sim.system.params["initial.position"].numpy()
    target = x0[None] + 0.02 * np.random.default_rng(4).normal(size=(sim.steps, *x0.shape))
    sim.set_loss(diffsim.PointLoss(target, every=1))
    value, grads = sim.value_and_grad(names)
    sim.set_loss(None)
    vs = [tf.Variable(sim.system.params[n].numpy()) for n in names]

    @tf.function
    def loss_and_grad():
        with tf.GradientTape() as tape:
            x = dtf.simulate(sim, dict(zip(names, vs, strict=True)), outputs=("x",))["x"]
            loss = tf.reduce_sum((x[1:] - target[:, None]) ** 2) / (sim.steps * target.shape[1])
        return loss, tape.gradient(loss, vs)

    mine, g = loss_and_grad()
    assert abs(float(mine) - value) <= 1e-12 * abs(value)
    for name, gi in zip(names, g, strict=True):
        assert np.abs(gi.numpy() - grads[name]).max() <= 1e-12 * np.abs(grads[name]).max(), name
