"""The gradient-sign check of DiffTaichi (Hu et al. 2020, section 4.3).

A ball dropped from rest at height h0 bounces elastically. With a hard contact at t1 = sqrt(2 h0 / g) and rebound
speed v = g t1, its height at time T after the bounce is y = v s - g s^2 / 2 (s = T - t1), so

    dy(T) / dh0 = 2 g s / v - 1,

negative shortly after the bounce and positive later. A penalty contact of stiffness k lasts tau = pi sqrt(m / k),
which delays the rebound: s = T - t1 - tau. Time-stepping a contact naively makes the discrete rebound a sawtooth
in h0 whose local slope has the wrong sign (DiffTaichi's impulse model, and a plain penalty force, which failed
here even at dt = 1 ms); the step-averaged penalty force of the rigid system gets the sign right at coarse dt
(omega dt = 0.5, about six steps per contact) and the value within a few percent at omega dt <= 0.2.
"""

import math

import numpy as np
import pytest

import diffsim
from diffsim.systems.rigid import RigidModel, RigidSystem
from tests.conftest import use

G, R, H0, K = 9.81, 0.1, 1.0, 1e4


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


_SYSTEMS = {}


def ball(dt: float, h0: float = H0):
    """The ball system for this dt (one per dt: dt is compiled into the step), released from rest at h0."""
    if dt not in _SYSTEMS:
        m = RigidModel(dim=2)
        m.add_body([0.0, H0 + R], name="ball", mass=1.0)
        m.add_circle("ball", R)
        _SYSTEMS[dt] = RigidSystem(m, dt=dt, ground=0.0, ground_restitution=1.0, ground_stiffness=K)
    system = _SYSTEMS[dt]
    system.params["initial.position"].set([[0.0, h0 + R]])
    return system


_SIMS = {}


def rollout(dt: float, T: float, h0: float = H0):
    """The simulation of the ball released at h0 for T seconds (cached per (dt, T): new state buffers compile new
    kernel instances). Loss |x - (0, -100)|^2, so d loss / d y0 = 2 (y(T) + 100) dy(T)/dy0 (x stays 0)."""
    system = ball(dt, h0)
    if (dt, T) not in _SIMS:
        _SIMS[dt, T] = diffsim.Simulation(
            system, int(round(T / dt)), loss=diffsim.FinalPositionLoss([[0.0, -100.0]])
        )
    return _SIMS[dt, T]


def height_gradient(dt: float, T: float) -> tuple[float, float]:
    """(height of the ball's centre at T, d height / d initial height) by reverse mode."""
    sim = rollout(dt, T)
    sim.forward()
    y = float(sim.trajectory()["x"][-1, 0, 0, 1])
    _, grads = sim.value_and_grad(["initial.position"])
    return y, grads["initial.position"][0, 1] / (2 * (y + 100.0))


def analytic(T: float, contact_time: float = 0.0) -> float:
    t1 = math.sqrt(2 * H0 / G)
    s = T - t1 - contact_time
    return 2 * G * s / (G * t1) - 1


TAU = math.pi * math.sqrt(1.0 / K)  # contact duration of the linear spring, m = 1 kg


@pytest.mark.parametrize(
    "dt, rel",
    [
        (5e-3, 0.35),
        pytest.param(2e-3, 0.06, marks=pytest.mark.slow),
        pytest.param(1e-3, 0.03, marks=pytest.mark.slow),
    ],
)
def test_bounce_gradient_has_the_analytic_sign(dt, rel):
    for T in (0.6, 0.9):
        _y, grad = height_gradient(dt, T)
        hard, soft = analytic(T), analytic(T, TAU)
        assert np.sign(grad) == np.sign(hard) == np.sign(soft), (dt, T, grad, hard, soft)
        assert grad == pytest.approx(soft, rel=rel), (dt, T, grad, soft)


def test_bounce_gradient_matches_finite_differences_at_coarse_dt():
    """The gradient is that of the simulated rollout (not a surrogate): central differences agree."""
    dt, T = 5e-3, 0.9
    _y, grad = height_gradient(dt, T)
    h = 1e-6
    up = height_gradient_value(dt, T, H0 + h)
    down = height_gradient_value(dt, T, H0 - h)
    assert grad == pytest.approx((up - down) / (2 * h), rel=1e-5)


def height_gradient_value(dt: float, T: float, h0: float) -> float:
    sim = rollout(dt, T, h0)
    sim.forward()
    return float(sim.trajectory()["x"][-1, 0, 0, 1])
