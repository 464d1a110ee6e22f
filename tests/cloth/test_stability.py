"""The cloth's stable-step estimate includes each mechanism's damping: (omega dt)^2 + 2 gamma dt < 4."""

import math

import pytest

from diffsim.systems.cloth import ClothModel, ClothSystem
from tests.conftest import use


def test_damping_tightens_the_stretching_limit_as_the_damped_oscillator_bound():
    # For semi-implicit Euler on v' = v - dt (omega^2 x + gamma v), x' = x + dt v' the bound is
    # dt < 4 / (gamma + sqrt(gamma^2 + 4 omega^2)); undamped it is 2 / omega, which gives omega here.
    use("cpu", "f64")
    model = ClothModel.grid(size=(0.2, 0.2), resolution=(4, 4), stretch_modulus=50.0, density=0.1)
    system = ClothSystem(model, dt=1e-4, gravity=(0.0, 0.0, 0.0))
    undamped = system.stability_limits()
    assert "damping" not in undamped  # no mass damping
    omega = 2.0 / undamped["stretching"]
    nu = float(system.poisson_ratio.numpy())
    y = 50.0
    p_mod = y * nu / (1 - nu**2) + y / (1 + nu)  # lambda + 2 mu of the membrane
    for c_s, c_m in [(0.01, 0.0), (0.0, 300.0), (0.01, 300.0)]:
        system.stretch_damping.set(c_s)
        system.mass_damping.set(c_m)
        gamma = 2 * c_s * omega**2 / p_mod + c_m
        limits = system.stability_limits()
        expected = 4.0 / (gamma + math.sqrt(gamma**2 + 4 * omega**2))
        assert limits["stretching"] == pytest.approx(expected, rel=1e-12)
        assert (omega * expected) ** 2 + 2 * gamma * expected == pytest.approx(4.0, rel=1e-12)
        assert limits["stretching"] < undamped["stretching"]
        if c_m:
            assert limits["damping"] == pytest.approx(2.0 / c_m, rel=1e-12)
