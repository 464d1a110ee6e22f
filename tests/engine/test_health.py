"""Gradient health: the adjoint-norm report against the analytic growth of a linear spring, the non-finite frame, and
the remedies (truncated backpropagation, adjoint clipping) against hand-computed gradients. f64 throughout."""

import warnings

import numpy as np
import pytest

import diffsim
from diffsim.errors import SimulationError
from tests.conftest import use


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


# -- a numpy copy of the springs step (diffsim/systems/springs/system.py: no ground, no controller) -------------
def np_step(x, v, springs, k, c, rest, m, g, dt):
    force = m[:, None] * g[None, :]
    for s, (a, b) in enumerate(springs):
        d = x[b] - x[a]
        length = np.sqrt(d @ d + 1e-20)
        u = d / length
        mag = k[s] * (length - rest[s]) + c[s] * ((v[b] - v[a]) @ u)
        force[a] += mag * u
        force[b] -= mag * u
    v1 = v + dt * force / m[:, None]
    return x + dt * v1, v1


def jacobian(x, v, args, h=1e-6):
    """d(x', v') / d(x, v) of one step, by central differences (the step is smooth)."""
    z0 = np.concatenate([x.ravel(), v.ravel()])
    n = x.size
    cols = []
    for i in range(z0.size):
        out = []
        for sgn in (1, -1):
            z = z0.copy()
            z[i] += sgn * h
            x1, v1 = np_step(z[:n].reshape(x.shape), z[n:].reshape(v.shape), *args)
            out.append(np.concatenate([x1.ravel(), v1.ravel()]))
        cols.append((out[0] - out[1]) / (2 * h))
    return np.array(cols).T


def spring_pair(omega_dt, dt=0.01, damping=0.0):
    """Two unit masses on one spring along x, at rest: the rollout stays at equilibrium exactly, so the step is linear
    around it and the adjoint grows by the step's Jacobian. omega * dt > 2 is beyond semi-implicit Euler's stability
    limit (an eigenvalue below -1)."""
    k = (omega_dt / dt) ** 2 / 2.0  # omega^2 = k (1/m1 + 1/m2)
    model = diffsim.SpringModel(dim=2)
    model.add_particle([0.0, 0.0])
    model.add_particle([1.0, 0.0])
    model.add_spring(0, 1, stiffness=k, damping=damping, rest_length=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deliberate instability warning
        system = diffsim.SpringSystem(model, dt=dt, gravity=[0.0, 0.0], ground=None)
    args = (
        [(0, 1)],
        np.array([k]),
        np.array([damping]),
        np.array([1.0]),
        np.ones(2),
        np.zeros(2),
        dt,
    )
    return system, args


TARGET = [[0.3, 0.1], [1.2, -0.05]]


def test_growth_rate_matches_the_step_jacobian():
    dt = 0.01
    system, args = spring_pair(3.0, dt)
    x = np.array([[0.0, 0.0], [1.0, 0.0]])
    J = jacobian(x, np.zeros_like(x), args)
    rho = np.abs(np.linalg.eigvals(J)).max()
    expected = np.log(rho) / dt
    sim = diffsim.Simulation(system, 40, loss=diffsim.FinalPositionLoss(TARGET), health_every=1)
    sim.value_and_grad(health=True)
    report = sim.health
    assert report.first_nonfinite is None
    assert abs(report.growth_rate() / expected - 1) < 0.05, (report.growth_rate(), expected)
    assert report.verdict().startswith("exploding"), report.verdict()
    # the report from checkpointed storage is the same
    cp = diffsim.Simulation(
        system, 40, loss=diffsim.FinalPositionLoss(TARGET), checkpoint_every=7, health_every=1
    )
    cp.value_and_grad(health=True)
    np.testing.assert_allclose(cp.health.norm, report.norm, rtol=1e-12)
    # by default a frame every ceil(256 / state scalars per frame) steps (here 8 scalars: 32), first and last
    sim.health_every = None
    sim.value_and_grad(health=True)
    assert sim.health.frames.tolist() == [0, 32, 40]
    sim.health_every = 6
    sim.value_and_grad(health=True)
    assert sim.health.frames.tolist() == [0, 6, 12, 18, 24, 30, 36, 40]
    np.testing.assert_allclose(sim.health.norm, report.norm[sim.health.frames], rtol=1e-12)


def test_damped_spring_vanishes():
    # zeta = 0.5 at omega = 50/s: the relative mode's adjoint decays as exp(-25 t) going back; the target pulls the
    # masses apart along the spring only, so the undamped modes (translation, rotation) get no adjoint
    system, _ = spring_pair(0.5, 0.01, damping=25.0)
    sim = diffsim.Simulation(
        system, 100, loss=diffsim.FinalPositionLoss([[-0.1, 0.0], [1.1, 0.0]]), health_every=1
    )
    sim.value_and_grad(health=True)
    assert sim.health.verdict().startswith("vanishing"), sim.health.verdict()
    assert sim.health.growth_rate() < -10


def test_first_nonfinite_frame_is_named_and_raises_by_default():
    dt, steps = 0.01, 200
    system, args = spring_pair(10.0, dt)
    x = np.array([[0.0, 0.0], [1.0, 0.0]])
    J = jacobian(x, np.zeros_like(x), args)
    # the adjoint recursion in numpy: a_k = J^T a_{k+1}, from d loss / d x_T = 2 (x_T - target) / n_points
    a = np.concatenate([(2 * (x - np.asarray(TARGET)) / 2).ravel(), np.zeros(4)])
    expected = None
    with np.errstate(over="ignore", invalid="ignore"):
        for f in range(steps - 1, -1, -1):
            a = J.T @ a
            if not np.all(np.isfinite(a)):
                expected = f
                break
    assert expected is not None and 0 < expected < steps - 10
    sim = diffsim.Simulation(system, steps, loss=diffsim.FinalPositionLoss(TARGET))
    with pytest.raises(SimulationError) as err:
        sim.value_and_grad()
    assert err.value.frame == expected, str(err.value)
    assert "adjoint of" in str(err.value) and "truncate" in str(err.value), str(err.value)
    assert sim.health is not None and sim.health.first_nonfinite == expected
    # truncation is a remedy when it stops before that frame
    sim.backward(truncate=steps - expected - 5)
    assert np.all(np.isfinite(system.params["springs.stiffness"].grad()))
    with pytest.raises(SimulationError, match=f"truncate={steps - expected + 5}"):
        sim.backward(truncate=steps - expected + 5)
    # the same frame from checkpointed storage (located by a second pass, the last segment recomputed)
    cp = diffsim.Simulation(system, steps, loss=diffsim.FinalPositionLoss(TARGET), checkpoint_every=30)
    with pytest.raises(SimulationError) as err:
        cp.value_and_grad()
    assert err.value.frame == expected, str(err.value)
    # opting out returns the non-finite gradient without a word
    quiet = diffsim.Simulation(
        system, steps, loss=diffsim.FinalPositionLoss(TARGET), check_finite=False, health_every=1
    )
    _, grads = quiet.value_and_grad(health=True)
    assert not np.all(np.isfinite(grads["springs.stiffness"]))
    assert quiet.health.first_nonfinite == expected
    assert quiet.health.verdict().startswith("exploding: the adjoint of")


# -- remedies ---------------------------------------------------------------------------------------------------
def hanging_pair(batch=1):
    model = diffsim.SpringModel(dim=2)
    model.add_particle([0.0, 1.0], pinned=True)
    model.add_particle([0.12, 0.95], mass=0.1)
    model.add_particle([0.2, 0.85], mass=0.1)
    model.add_spring(0, 1, stiffness=60.0, damping=0.3, rest_length=0.1)
    model.add_spring(1, 2, stiffness=40.0, damping=0.2, rest_length=0.1)
    system = diffsim.SpringSystem(model, dt=5e-3, ground=None, batch=batch)
    args = (
        [(0, 1), (1, 2)],
        np.array([60.0, 40.0]),
        np.array([0.3, 0.2]),
        np.array([0.1, 0.1]),
        np.array([1.0, 0.1, 0.1]),
        np.array([0.0, -9.81]),
        5e-3,
    )
    return system, args


STEPS, EVERY = 12, 3


def _target():
    rng = np.random.default_rng(1)
    base = np.array([[0.0, 1.0], [0.12, 0.93], [0.2, 0.82]])
    return base[None] + 0.02 * rng.normal(size=(STEPS // EVERY, 3, 2))


@pytest.fixture(scope="module")
def pair():
    return hanging_pair()


def _sim(system, **kw):
    return diffsim.Simulation(system, STEPS, loss=diffsim.PointLoss(_target(), every=EVERY), **kw)


@pytest.fixture(scope="module")
def sims(pair):
    """The hanging pair with full storage and checkpointed every 5 and every 2 steps: the options are per call, so
    the tests share these (each new simulation compiles its kernels)."""
    system, _ = pair
    return {
        "full": _sim(system),
        "cp5": _sim(system, checkpoint_every=5),
        "cp2": _sim(system, checkpoint_every=2),
    }


def _grads(sim, **kw):
    sim.forward()
    sim.backward(**kw)
    return {p.name: p.grad().copy() for p in sim.system.params.with_grad()}


def test_truncation_beyond_the_horizon_is_the_full_gradient(sims):
    full = _grads(sims["full"])
    for key in ("full", "cp5"):
        for W in (STEPS, STEPS + 3):
            trunc = _grads(sims[key], truncate=W)
            for name, g in full.items():
                np.testing.assert_allclose(trunc[name], g, rtol=0, atol=1e-12 * max(1.0, np.abs(g).max()))


def test_truncated_gradient_matches_hand_computation(pair, sims):
    _, args = pair
    W = 4
    sim = sims["full"]
    sim.run()
    traj = sim.trajectory()
    xs, vs = traj["x"][:, 0], traj["v"][:, 0]
    # the numpy step reproduces the engine's rollout
    x1, v1 = np_step(xs[0], vs[0], *args)
    x1[0], v1[0] = xs[0][0], 0.0  # particle 0 is pinned
    np.testing.assert_allclose(x1, xs[1], atol=1e-14)
    target = _target()
    frames = EVERY * np.arange(1, STEPS // EVERY + 1)

    def loss_after(t, k):
        """loss term at frame t, started from the recorded state at max(t - W, 0) with stiffness k."""
        start = max(t - W, 0)
        x, v = xs[start].copy(), vs[start].copy()
        a = (args[0], k, *args[2:])
        for _ in range(t - start):
            x, v = np_step(x, v, *a)
            x[0], v[0] = xs[0][0], 0.0
        row = list(frames).index(t)
        d = x - target[row]
        return np.sum(d * d) / (len(frames) * 3)

    expected = np.zeros(2)
    k0 = args[1]
    for t in frames:
        for s in range(2):
            h = 1e-6 * k0[s]
            kp, km = k0.copy(), k0.copy()
            kp[s] += h
            km[s] -= h
            expected[s] += (loss_after(t, kp) - loss_after(t, km)) / (2 * h)
    for key in ("full", "cp5", "cp2"):
        got = _grads(sims[key], truncate=W)["springs.stiffness"]
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    full = _grads(sims["full"])["springs.stiffness"]
    assert np.abs(full - expected).max() > 1e-3 * np.abs(expected).max()  # truncation does change it


def test_clipping_with_a_huge_bound_is_the_full_gradient_and_storage_agrees(sims):
    full = _grads(sims["full"])
    clipped = _grads(sims["full"], clip_adjoint=1e30)
    for name, g in full.items():
        np.testing.assert_array_equal(clipped[name], g)
    tight_full = _grads(sims["full"], clip_adjoint=1e-3)
    tight_cp = _grads(sims["cp5"], clip_adjoint=1e-3)
    assert np.abs(tight_full["springs.stiffness"] - full["springs.stiffness"]).max() > 0
    for name, g in tight_full.items():
        np.testing.assert_allclose(tight_cp[name], g, rtol=1e-12, atol=1e-300)
    # the report records each frame's norm before clipping
    sim = sims["full"]
    sim.forward()
    sim.backward(clip_adjoint=1e-3, health=True)
    assert sim.health.norm.max() > 1e-3


def test_remedies_with_a_batch():
    system, _ = hanging_pair(batch=2)
    target = np.repeat(_target()[:, None], 2, axis=1)
    target[:, 1] += 0.01

    sims = {
        key: diffsim.Simulation(system, STEPS, loss=diffsim.PointLoss(target, every=EVERY), **kw)
        for key, kw in (("full", {}), ("cp", {"checkpoint_every": 5}))
    }

    def grads(key, **bw):
        sims[key].forward()
        sims[key].backward(**bw)
        return system.params["springs.stiffness"].grad().copy()

    for bw in ({"truncate": 4}, {"clip_adjoint": 1e-3}):
        np.testing.assert_allclose(grads("cp", **bw), grads("full", **bw), rtol=1e-12)
    # the report keeps one norm per copy; the copies' targets differ, so do their adjoints
    sims["full"].health_every = 1
    grads("full", health=True)
    per_copy = sims["full"].health.norm_per_copy
    assert per_copy.shape == (STEPS + 1, 2) and not np.allclose(per_copy[:, 0], per_copy[:, 1])
    np.testing.assert_allclose(sims["full"].health.norm, np.sqrt((per_copy**2).sum(axis=1)), rtol=1e-12)


def test_report_files_and_contributions(sims, tmp_path):
    sim = sims["cp5"]
    sim.health_every = 1
    try:
        sim.value_and_grad(health=True)
    finally:
        sim.health_every = None
    report = sim.health
    assert report.norm.shape == (STEPS + 1,)
    assert np.all(np.isfinite(report.norm)) and report.first_nonfinite is None
    report.csv(tmp_path / "health.csv")
    lines = (tmp_path / "health.csv").read_text().splitlines()
    assert lines[0].startswith("frame,time_s,adjoint_norm") and len(lines) == STEPS + 2
    report.plot(tmp_path / "health.png")
    assert (tmp_path / "health.png").stat().st_size > 0
    assert report.verdict().split(":")[0] in ("stable", "exploding", "vanishing")
    # chunks: the checkpoint segments, latest first; a single chunk's contribution is the whole gradient
    assert [(lo, hi) for lo, hi, _ in report.contributions] == [(10, 12), (5, 10), (0, 5)]
    assert all(v >= 0 for _, _, d in report.contributions for v in d.values())
