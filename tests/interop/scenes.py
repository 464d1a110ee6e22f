"""Tiny scenes of the five systems for the framework bridges' gradient checks (few steps, f64), and the framework
check shared by the bridge tests."""

import os

import numpy as np
import pytest

import diffsim

#: steps of every rollout checked (checkpointed storage: segments of CHECKPOINT steps, so frames inside a segment
#: carry cotangents too)
STEPS = 4
CHECKPOINT = 3

SYSTEMS = ["springs", "rigid", "cloth", "mpm", "smoke"]

#: the trajectory quantities `simulate` returns in the checks (smoke's pressure is the solver's warm start)
OUTPUTS = {
    "springs": ("x", "v"),
    "rigid": ("x", "angle"),
    "cloth": ("x", "v"),
    "mpm": ("x", "F"),
    "smoke": ("velocity", "scalars"),
}


def framework_or_skip(module: str):
    """Import a framework (torch, jax, tensorflow) or skip; with DIFFSIM_REQUIRE_INTEROP=1 (CI) a missing one fails."""
    try:
        return pytest.importorskip(module)
    except pytest.skip.Exception:
        if os.environ.get("DIFFSIM_REQUIRE_INTEROP") == "1":
            pytest.fail(f"DIFFSIM_REQUIRE_INTEROP=1 but {module} is not installed (make install-interop)")
        raise


def build(kind: str, batch: int = 1):
    """A small system of `kind`, driven by OpenLoop actions where it has a controller (one row per copy), and
    the parameters its checks differentiate."""
    per = batch > 1
    if kind == "springs":
        from tests.springs.bodies import square

        system = diffsim.SpringSystem(
            square(actuated=True),
            dt=2e-3,
            ground=0.0,
            friction=0.6,
            contact_stiffness=3000.0,
            contact_damping=5.0,
            controller=diffsim.OpenLoop(2, STEPS, init=0.3, per_batch=per),
            batch=batch,
        )
        return system, ["springs.stiffness", "initial.velocity"]
    if kind == "rigid":
        from tests.rigid.test_gradients import mechanism_2d

        system = mechanism_2d(controller=diffsim.OpenLoop(2, STEPS, init=0.4, per_batch=per), batch=batch)
        return system, ["joints.stiffness", "initial.velocity"]
    if kind == "cloth":
        from tests.cloth.test_gradients import free_cloth

        return free_cloth(batch=batch), ["material.stretch_modulus", "air.wind"]
    if kind == "mpm":
        from diffsim.systems.mpm import MPMSystem
        from tests.mpm.test_gradients import WALLS, small_model

        system = MPMSystem(
            small_model(),
            dt=2e-3,
            walls=WALLS,
            wall_friction=0.4,
            controller=diffsim.OpenLoop(2, STEPS, init=0.3, per_batch=per),
            actuation_strength=400.0,
            batch=batch,
        )
        return system, ["materials.jelly.youngs_modulus", "bodies.velocity"]
    if kind == "smoke":
        from tests.smoke.cases import full_featured

        return full_featured(n=6, batch=batch), ["viscosity", "control.force"]
    raise ValueError(kind)


def simulation(kind: str, batch: int = 1, storage: str = "full", loss=None):
    system, names = build(kind, batch)
    k = CHECKPOINT if storage == "checkpointed" else None
    return diffsim.Simulation(system, STEPS, loss=loss, storage=storage, checkpoint_every=k), names


def trajectory_target(sim, quantity: str = "x", seed: int = 1) -> np.ndarray:
    """A target trajectory near the initial state for a PointLoss at every frame 1..steps."""
    x0 = sim.system.params["initial.position"].numpy()
    return x0[None] + 0.02 * np.random.default_rng(seed).normal(size=(sim.steps, *x0.shape))


#: `Step` on smoke from a given state disagrees with central differences: the next state depends on the incoming
#: pressure (the solver's warm start; directional derivative 19.2 by central differences at h = 1e-4..1e-6) where
#: the system's adjoint of the pressure solve gives 0, and a velocity direction is off by 0.25 % (7.1400 against
#: 7.1218). Rollouts through `simulate` agree (their first pressure is the system's own). Known, not yet resolved.
SMOKE_STEP = pytest.mark.xfail(
    reason="smoke Step: the pressure warm start's derivative is missing from the adjoint (tests/interop/scenes.py)",
    strict=True,
)
