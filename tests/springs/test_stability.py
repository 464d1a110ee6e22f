"""The stable time step of a spring with a dashpot, for this system's semi-implicit Euler.

Along the spring, the separation of two particles is one oscillator of mass m_red = m_a m_b / (m_a + m_b):
v' = v - dt (k x + c v) / m_red, x' = x + dt v'. It is stable if and only if (omega dt)^2 + 2 (c / m_red) dt < 4,
omega^2 = k / m_red (Jury's test on its amplification matrix; the derivation is in SpringSystem.stability).
"""

import numpy as np
import pytest

import diffsim
from diffsim import SimulationError
from tests.conftest import use

DT = 1e-3
M_RED = 0.05  # two 0.1 kg particles
STEPS = 300

# (omega dt)^2 and 2 c dt / m_red on the limit (their sum is 4): a pure spring, a mixed case, a pure dashpot
# (its spring, 1e-9 of the limit, only keeps the stiffness > 0 for the log transform)
LIMITS = [(4.0, 0.0), (2.0, 2.0), (4e-9, 4.0 - 4e-9)]
SCALES = [0.97, 1.03]  # k and c both scaled: the left-hand side becomes 3.88 (stable) or 4.12 (unstable)


def spring_and_damping(a_dt2, b2dt, scale):
    return scale * a_dt2 * M_RED / DT**2, scale * b2dt * M_RED / (2 * DT)


@pytest.fixture(scope="module")
def system():
    use("cpu", "f64")
    m = diffsim.SpringModel(dim=2)
    m.add_particle([0.0, 0.0], mass=0.1)
    m.add_particle(
        [0.2, 0.0], velocity=[0.1, 0.0], mass=0.1
    )  # along the spring: the motion stays on its axis
    m.add_spring(0, 1, stiffness=1.0, damping=0.0)
    copies = [(lim, s) for lim in LIMITS for s in SCALES]
    system = diffsim.SpringSystem(
        m,
        dt=DT,
        gravity=[0.0, 0.0],
        ground=None,
        batch=len(copies),
        per_batch=("springs.stiffness", "springs.damping"),
    )
    k, c = np.array([spring_and_damping(*lim, s) for lim, s in copies]).T
    system.params["springs.stiffness"].set(k.reshape(-1, 1))
    system.params["springs.damping"].set(c.reshape(-1, 1))
    return system, copies


def test_the_bound_separates_stable_from_unstable_steps(system):
    system, copies = system
    sim = diffsim.Simulation(system, STEPS)
    sim.divergence_factor = None  # the unstable copies grow; this test measures by how much
    sim.run()
    x = sim.trajectory()["x"]  # (frames, copies, particles, 2)
    stretch = np.abs(x[:, :, 1, 0] - x[:, :, 0, 0] - 0.2)
    growth = stretch[-50:].max(axis=0) / stretch[1:51].max(axis=0)
    for (lim, scale), g in zip(copies, growth, strict=True):
        if scale < 1:
            # bounded: the damped copies decay, the undamped one's sampled peaks vary by under 1 %
            assert g < 1.01, (lim, scale, g)
        else:
            assert g > 10.0, (lim, scale, g)
    # the estimate is the tightest copy's bound: the pure dashpot scaled by 1.03, 2 m_red / c = DT / 1.03
    dt_max, what = system.stable_dt()
    assert dt_max == pytest.approx(DT / 1.03, rel=1e-6)
    assert what.startswith("spring 0 (stiffness ")


@pytest.mark.parametrize(
    ("stiffness", "damping", "expected"),
    [(100.0, 0.0, 2 / np.sqrt(100.0 / M_RED)), (1e-12, 1.0, 2 * M_RED / 1.0), (100.0, 1.0, 0.03582576)],
)
def test_stable_step_formula(stiffness, damping, expected):
    # dt_max = 4 / (b + sqrt(b^2 + 4 a)), a = k / m_red, b = c / m_red: 2 / omega for a spring, 2 m_red / c for a
    # dashpot, and for k = 100, c = 1 (a = 2000, b = 20) the root of 2000 dt^2 + 40 dt = 4
    use("cpu", "f64")
    m = diffsim.SpringModel(dim=2)
    m.add_particle([0.0, 0.0], mass=0.1)
    m.add_particle([0.2, 0.0], mass=0.1)
    m.add_spring(0, 1, stiffness=stiffness, damping=damping)
    dt_max, _ = diffsim.SpringSystem(m, dt=1e-4, gravity=[0.0, 0.0], ground=None).stable_dt()
    assert dt_max == pytest.approx(expected, rel=1e-6)
    a, b = stiffness / M_RED, damping / M_RED
    assert a * dt_max**2 + 2 * b * dt_max == pytest.approx(4.0, rel=1e-9)  # on the limit


def test_an_enormous_dashpot_is_named_with_the_step():
    # c = 1e9 N s/m on 0.05 kg: the bound 2 m_red / c = 1e-10 s. A warning at build time names the dashpot and both
    # steps; the rollout then stops in its first frames with the same diagnosis instead of reaching 1e34 m.
    use("cpu", "f64")
    m = diffsim.SpringModel(dim=2)
    m.source = "robot.toml"
    m.add_particle([0.0, 0.0], mass=0.1)
    m.add_particle([0.2, 0.0], velocity=[0.1, 0.0], mass=0.1)
    m.add_spring(0, 1, stiffness=100.0, damping=1e9)
    with pytest.warns(
        UserWarning,
        match=r"robot.toml: dt=0.001 s is above the stability limit of semi-implicit Euler for spring 0 \(stiffness "
        r"100 N/m, damping 1e\+09 N s/m\): dt < 1e-10 s",
    ):
        system = diffsim.SpringSystem(m, dt=1e-3, gravity=[0.0, 0.0], ground=None)
    sim = diffsim.Simulation(system, 100)
    with pytest.raises(SimulationError) as err:
        sim.run()
    assert err.value.frame <= 3, str(err.value)
    assert "dt=0.001 s; spring 0 (stiffness 100 N/m, damping 1e+09 N s/m) needs dt < 1e-10 s" in str(
        err.value
    )
