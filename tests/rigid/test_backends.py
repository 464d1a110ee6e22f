"""The CPU (x64) backend and the others (Vulkan in CI, CUDA in the GPU check) agree on rigid bodies.

2D: the mechanism of the gradient tests (a box on the ground, an arm on a limited hinge with a PD motor, an actuated
spring between them, a ball falling onto the arm; ground contact of corners and circle, circle-box contact, joint
limit, motor, spring, open-loop controls) for 150 steps. 2D rotations use cos and sin, and every contact's damping
comes from its restitution through log and asin: SPIR-V has no f64 transcendentals, so on Vulkan in f64 these are
evaluated in f32 (docs/developing.md, rule 9) and the f64 runs agree only to f32 rounding of those terms. Measured:
loss 7e-7, positions 5e-8, velocities 3e-6, gradients up to 3.4e-5 relative (bodies.density). The CPU
with the same f32 transcendentals forced (a probe, not kept as a test) differs from the CPU in f64 by the same amounts
(loss 7e-7, gradients up to 3.4e-5), so the whole difference is theirs. Tolerances: rollout 1e-5, gradients 2e-4.
f32 rollouts: positions 1e-5, velocities 1e-4 relative (as cloth and springs); f32 gradients: each backend's within
1e-3 of the CPU's f64 gradient, as cloth and smoke (measured worst: contact.restitution, 6.2e-4 on the CPU and 4.8e-4
on Vulkan; its gradient passes through the Newton iteration for the damping ratio).

Without transcendentals: a wheel hinged to the world at its centre (PD motor, limits), a ball bouncing off it onto
the ground and a ball rolling on the ground, perfectly elastic (restitution 1: log(1) = asin(0) = 0 exactly in any
precision) and only circles (no rotation matrix multiplies a nonzero offset): the same arithmetic on both backends.
Measured: the f64 rollouts and losses are bitwise equal (angular velocity 2e-16); tolerance 1e-10 (as cloth), except
the few gradients whose adjoint still passes through an f32 function (`F32_ADJOINT`: 1e-6, measured up to 1.1e-7).
(A 3D set-up would avoid cos and sin through quaternions, but its step's adjoint took over 5 minutes to compile for
Vulkan on the loaded 2-core machine.)
"""

import numpy as np
import pytest

import diffsim
from diffsim.systems.rigid import RigidModel, RigidSystem
from tests.backends import assert_agree, assert_f32_near_f64, run
from tests.conftest import backend_or_skip, other_backends, use
from tests.rigid.test_gradients import STEPS, loss_2d, mechanism_2d

# Compiling the step and its adjoint for Vulkan takes 1.5-2.5 min per set-up and precision on 2 loaded cores:
# `make test-slow`.
pytestmark = [pytest.mark.slow, pytest.mark.backends]


def rollout_2d(arch, precision):
    use(arch, precision)
    system = mechanism_2d()
    sim = diffsim.Simulation(system, STEPS, loss=loss_2d(system))
    return run(sim)


#: gradients whose adjoint still passes through an f32 function on Vulkan in f64: the restitutions' through log and
#: asin (the adjoint is rounded to f32 there), the anchor offsets' through the wheel's rotation matrix (cos, sin),
#: which multiplies the zero offset in the rollout but not in its derivative. Measured: contact.restitution 1.1e-7,
#: joints.anchor_b 3e-8, ground.restitution 2e-9; f32 rounding is 6e-8 per term.
F32_ADJOINT = {
    "ground.restitution": 1e-6,
    "contact.restitution": 1e-6,
    "joints.anchor_a": 1e-6,
    "joints.anchor_b": 1e-6,
}


def wheel_and_balls():
    """A wheel on a hinge to the world at its own centre (PD motor, joint limits), a ball falling onto it and
    bouncing off onto the ground, a second ball sliding and rolling on the ground; restitution 1 everywhere. Only
    circles, and the joint's anchor is the wheel's centre, so no rotation matrix multiplies a nonzero offset: the
    f32 cos and sin of Vulkan's f64 mode drop out, and log(1) = asin(0) = 0 in any precision."""
    m = RigidModel(dim=2, source="backends_exact")
    m.add_body([0.3, 0.15], angular_velocity=0.5, name="wheel", density=200.0)
    m.add_circle("wheel", 0.05)
    m.add_joint(
        "revolute",
        "world",
        "wheel",
        anchor=[0.3, 0.15],
        stiffness=2e4,
        damping=5.0,
        lower=-0.3,
        upper=0.05,
        limit_stiffness=50.0,
        limit_damping=0.5,
        name="axle",
    )
    m.add_motor("axle", mode="position", scale=0.3, kp=2.0, kd=0.05)
    m.add_body([0.33, 0.27], velocity=[0.1, -0.5], name="ball", mass=0.3)
    m.add_circle("ball", 0.04)
    m.add_body([0.1, 0.0405], velocity=[0.5, 0.02], angular_velocity=-2.0, name="roller", mass=0.2)
    m.add_circle("roller", 0.04)
    return RigidSystem(
        m,
        dt=2e-3,
        ground=0.0,
        ground_friction=0.6,
        ground_restitution=1.0,
        ground_stiffness=2e4,
        contact_friction=0.3,
        contact_restitution=1.0,
        contact_stiffness=1e4,
        controller=diffsim.OpenLoop(1, STEPS, init=0.4),
    )


def rollout_exact(arch):
    use(arch, "f64")
    system = wheel_and_balls()
    sim = diffsim.Simulation(system, STEPS, loss=loss_2d(system))
    return run(sim)


@pytest.mark.parametrize("arch", other_backends())
def test_2d_cpu_and_other_backend_agree(arch):
    backend_or_skip(arch)
    cpu64 = rollout_2d("cpu", "f64")
    other64 = rollout_2d(arch, "f64")
    cpu32 = rollout_2d("cpu", "f32")
    other32 = rollout_2d(arch, "f32")
    use("cpu", "f64")
    # the set-up: ground and body-body contacts, the joint limit and the motor act (their gradients are nonzero)
    for name in ("ground.stiffness", "contact.stiffness", "joints.upper", "motors.kp"):
        assert np.abs(cpu64[2][name]).max() > 0, name
    # f64: equal up to the f32 transcendentals of Vulkan (see the module docstring)
    assert_agree(cpu64, other64, loss=1e-5, traj=1e-5, grads=2e-4)
    # f32 rollouts, against each other
    assert_agree(cpu32, other32, loss=1e-5, traj={"x": 1e-5, "v": 1e-4})
    # f32 gradients: each backend's against the CPU's f64 gradient
    assert_f32_near_f64(cpu64, cpu32, other32, rollouts=False)


@pytest.mark.parametrize("arch", other_backends())
def test_f64_without_transcendentals_agrees_to_rounding(arch):
    backend_or_skip(arch)
    cpu64 = rollout_exact("cpu")
    other64 = rollout_exact(arch)
    use("cpu", "f64")
    # ground and body-body contact, the joint limit and the motor act
    for name in ("ground.stiffness", "contact.stiffness", "joints.upper", "motors.kp", "controller.actions"):
        assert np.abs(cpu64[2][name]).max() > 0, name
    assert_agree(cpu64, other64, loss=1e-12, traj=1e-10, grads=lambda name: F32_ADJOINT.get(name, 1e-10))
