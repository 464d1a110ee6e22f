"""Small smoke set-ups shared by the tests (a few distinct systems: each compiles its own kernels)."""

import numpy as np

from diffsim.systems.smoke import SmokeModel, SmokeSystem

#: f64 tests solve to this divergence (1/s) so that solver error stays far below the tolerances checked
TIGHT = dict(tolerance=1e-10, relative_tolerance=0.0, adjoint_tolerance=1e-12)


def swirl(speed=0.5):
    """A divergence-free field vanishing on the walls of the unit box: u = speed * curl(sin^2(pi x) sin^2(pi y))/pi."""

    def u(p):
        x, y = p[..., 0], p[..., 1]
        return speed * np.stack(
            [
                -(np.sin(np.pi * x) ** 2) * np.sin(2 * np.pi * y),
                np.sin(np.pi * y) ** 2 * np.sin(2 * np.pi * x),
            ],
            -1,
        )

    return u


def random_velocity(system, scale, seed=0):
    """Smooth-ish random MAC velocity (no exact symmetries: interpolation kinks need generic departure points)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=system.v0.shape) * scale


def full_featured(dim=2, advection="semi_lagrangian", n=10, batch=1, per_batch=(), **kw):
    """Two scalars, an obstacle, a source, buoyancy, gravity, viscosity, vorticity confinement and a force control,
    with a closed box open at the top (3D: periodic along the middle axis)."""
    res = (n,) * dim
    bnd = [("closed", "closed")] * (dim - 1) + [("closed", "open")]
    if dim == 3:
        bnd[1] = "periodic"
    m = SmokeModel(res, boundary=bnd, scalars=("density", "temperature"))
    rng = np.random.default_rng(1)
    m.set_scalar("density", 0.2 + 0.1 * rng.random(res))
    m.add_blob("density", (0.5,) * (dim - 1) + (0.3,), 0.3, sharpness=1.0)
    m.set_scalar("temperature", 0.1 + 0.1 * rng.random(res))
    m.add_obstacle(lo=(0.6,) * (dim - 1) + (0.6,), hi=(0.8,) * (dim - 1) + (0.75,))
    m.add_source({"density": 1.0, "temperature": 0.5}, center=(0.4,) * (dim - 1) + (0.15,), radius=0.2)
    opts = dict(
        advection=advection,
        buoyancy={"density": -0.5, "temperature": 3.0},
        gravity=(0.5,) * (dim - 1) + (-0.2,),
        viscosity=0.002,
        vorticity=0.3,
        control={"steps": 2, "hold": 3, "block": 5},
        batch=batch,
        per_batch=per_batch,
        **TIGHT,
    )
    opts.update(kw)
    system = SmokeSystem(m, dt=0.02, **opts)
    system.v0.set(random_velocity(system, 0.3))
    system.control.set(np.random.default_rng(2).normal(size=system.control.shape) * 0.5)
    return system
