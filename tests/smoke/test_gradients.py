"""Reverse-mode gradients of the smoke system against central finite differences (f64), through the adjoint
pressure solve, for every kind of parameter; the adjoint solve against differentiating the CG iterations."""

import numpy as np
import pytest

import diffsim
from diffsim.systems.smoke import CentroidLoss, ScalarLoss
from tests.conftest import use
from tests.gradients import assert_gradcheck
from tests.smoke.cases import full_featured

STEPS = 3
#: the forward solve stops at this divergence (1/s): its error then moves the loss by ~1e-13 relative, far below
#: what a central difference resolves (the gradcheck tolerance is 1e-6 relative)
GRAD_TIGHT = dict(tolerance=1e-12, relative_tolerance=0.0, adjoint_tolerance=1e-13)
#: finite-difference steps (relative to max(1, |value|)). Large steps cross kinks (MacCormack's clamp, the cell
#: index of a back-traced point: measured errors 1e-2 at step 1e-2), small ones drown in rounding (1e-16 x loss /
#: step); gradcheck keeps the best. Measured on these set-ups: 1e-10..1e-8 at steps 1e-4..1e-5.
FD_STEPS = (1e-3, 1e-4, 1e-5, 1e-6)

ALL_PARAMS = [
    "initial.velocity",
    "initial.density",
    "initial.temperature",
    "buoyancy.density",
    "buoyancy.temperature",
    "gravity",
    "viscosity",
    "vorticity",
    "source.rate",
    "control.force",
]


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


def density_loss(system, steps=STEPS):
    """Density and temperature against smooth images at every frame (weights every step's advection), and the
    density centroid at the last frame against a point."""
    x, y = np.meshgrid(*[(np.arange(k) + 0.5) / k for k in system.n[:2]], indexing="ij")
    img = 0.5 + 0.3 * np.sin(3 * x + 1) * np.cos(2 * y)
    if system.dim == 3:
        img = np.repeat(img[:, :, None], system.n[2], axis=2)
    targets = np.stack([img] * steps)
    centroid = CentroidLoss([0.6] * (system.dim - 1) + [0.7])  # the plume task's loss: squared distance (m^2)
    return (
        ScalarLoss(targets, every=1)
        + ScalarLoss(0.5 * targets[:, ::-1], scalar="temperature", every=1)
        + centroid
    )


def assert_smoke_gradcheck(sim, names, tolerance=1e-6):
    """Random directions and single coordinates for each parameter. Gravity is probed along directions only: its
    vertical component is balanced exactly by hydrostatic pressure (a uniform force is a gradient, removed by the
    projection), so its derivative is 0 and a single-coordinate relative error would compare rounding to rounding;
    that component is checked against 0 instead."""
    report = assert_gradcheck(
        sim,
        [n for n in names if n != "gravity"],
        tolerance=tolerance,
        steps=FD_STEPS,
        directions=2,
        coordinates=3,
    )
    if "gravity" in names:
        assert_gradcheck(sim, ["gravity"], tolerance=tolerance, steps=FD_STEPS, directions=3, coordinates=0)
        grad = sim.system.params["gravity"].grad()
        assert abs(grad[-1]) < 1e-9 * np.abs(grad).max(), grad
    for name in names:  # a gradient that is zero everywhere would pass trivially
        assert np.abs(sim.system.params[name].grad()).max() > 0, name
    return report


@pytest.fixture(scope="module")
def sl_system():
    return full_featured(2, "semi_lagrangian", n=10, **GRAD_TIGHT)


def test_every_parameter_semi_lagrangian(sl_system):
    assert sorted(ALL_PARAMS) == sorted(sl_system.params.names())
    sim = diffsim.Simulation(sl_system, STEPS, loss=density_loss(sl_system))
    assert_smoke_gradcheck(sim, ALL_PARAMS)


@pytest.mark.slow
def test_every_parameter_maccormack():
    """MacCormack's clamp is a kink (min/max): the random set-up keeps it away from the probed points at these
    step sizes; gradcheck keeps the best of several steps."""
    system = full_featured(2, "maccormack", n=10, **GRAD_TIGHT)
    sim = diffsim.Simulation(system, STEPS, loss=density_loss(system))
    assert_smoke_gradcheck(sim, ALL_PARAMS)


@pytest.mark.slow
def test_adjoint_solve_equals_the_differentiated_iterations(sl_system):
    """The custom gradient (one CG solve of A lambda = dL/dphi per step) against Taichi's reverse mode through 100
    plain CG iterations (exact for the 100 unknowns of this grid): equal to the solver tolerance. And the backward
    pass costs about one forward pass of solver iterations."""
    ref = full_featured(2, "semi_lagrangian", n=10, solver="unrolled", unrolled_iters=100, **GRAD_TIGHT)
    grads = {}
    for system in (sl_system, ref):
        sim = diffsim.Simulation(system, STEPS, loss=density_loss(system))
        system.solver.reset_stats()
        sim.forward()
        sim.backward()
        grads[system is ref] = {n: system.params[n].grad().copy() for n in ALL_PARAMS}
        if system is sl_system:
            stats = system.solver.stats()
    for n in ALL_PARAMS:
        a, b = grads[False][n], grads[True][n]
        err = np.abs(a - b).max() / np.abs(b).max()
        assert err < 1e-8, (
            n,
            err,
        )  # both solves are converged to ~1e-12; 1e-8 leaves room for their rounding
    assert stats["unconverged"] == 0
    assert stats["adjoint_solves"] == stats["solves"] == STEPS
    assert stats["adjoint_iterations"] <= 1.5 * stats["iterations"], stats


@pytest.mark.slow
def test_gradients_with_batch_and_checkpointing():
    """Two copies with their own initial velocity, checkpointed every 2 steps: same gradients as full storage."""
    system = full_featured(2, "semi_lagrangian", n=8, batch=2, per_batch=("initial.velocity",), **GRAD_TIGHT)
    system.v0.set(np.random.default_rng(5).normal(size=system.v0.full_shape) * 0.3)
    out = []
    for kw in ({}, {"storage": "checkpointed", "checkpoint_every": 2}):
        sim = diffsim.Simulation(system, 4, loss=density_loss(system, 4), **kw)
        sim.forward()
        sim.backward()
        out.append({n: system.params[n].grad().copy() for n in ("initial.velocity", "buoyancy.temperature")})
    for n in out[0]:
        np.testing.assert_allclose(out[1][n], out[0][n], rtol=1e-9, atol=1e-12 * np.abs(out[0][n]).max())
    g = out[0]["initial.velocity"]
    assert np.abs(g[0] - g[1]).max() > 1e-3 * np.abs(g).max()  # the copies differ
