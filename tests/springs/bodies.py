"""Small mass-spring bodies for tests."""

import numpy as np

import diffsim


def square(dim=2, height=0.05, vx=0.5, mass=0.2, stiffness=400.0, damping=1.0, actuated=False):
    """A 2D square (4 masses, 6 springs) or 3D tetrahedron-ish body, starting just above the ground and sliding."""
    m = diffsim.SpringModel(dim=dim)
    if dim == 2:
        pts = [[0.0, height], [0.1, height], [0.0, height + 0.1], [0.1, height + 0.12]]
    else:
        pts = [[0.0, 0.0, height], [0.1, 0.0, height], [0.0, 0.1, height], [0.05, 0.05, height + 0.1]]
    for k, p in enumerate(pts):
        vel = [vx] + [0.0] * (dim - 1)
        vel[-1] = -0.3 + 0.05 * k
        m.add_particle(p, velocity=vel, mass=mass * (1 + 0.1 * k))
    pairs = [(0, 1), (0, 2), (1, 3), (2, 3), (0, 3), (1, 2)]
    for s, (a, b) in enumerate(pairs):
        act = s if (actuated and s < 2) else -1
        m.add_spring(
            a,
            b,
            stiffness * (1 + 0.1 * s),
            damping * (1 + 0.05 * s),
            actuator=act,
            actuation=0.2 if act >= 0 else 0.0,
        )
    return m


def trajectory_target(system, steps, every=5, seed=1):
    """A smooth, arbitrary target trajectory of the right shape for a PointLoss."""
    rng = np.random.default_rng(seed)
    n_rows = steps // every
    x0 = system.params["initial.position"].numpy()
    return x0[None] + 0.02 * rng.normal(size=(n_rows, *x0.shape))
