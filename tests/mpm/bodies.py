"""Small MPM set-ups shared by the tests (small grids, few particles, short rollouts: each distinct set-up compiles
its own kernels)."""

import numpy as np

from diffsim.systems.mpm import MPMCollider, MPMModel, MPMSystem


def mixed_model(dim: int = 2, res: int = 16, sand_cohesion: float = 20.0) -> MPMModel:
    """An actuated elastic block, a fluid blob and a sand block thrown onto the floor of a res^dim box (2D), or an
    actuated elastic block (3D). Generic velocities: no contact starts exactly symmetric."""
    dx = 1.0 / res
    m = MPMModel(dim=dim, res=res, dx=dx, source="mixed")
    m.add_material("jelly", "elastic", density=1000.0, youngs_modulus=2e3, poisson_ratio=0.3, viscosity=0.5)
    if dim == 3:
        m.add_box([0.35, 0.35, 0.3], [0.55, 0.5, 0.45], "jelly", velocity=[0.3, 0.1, -1.0], ppc=8)
        m.actuator_ids[0][: m.n_particles // 2] = 0
        return m
    m.add_material("water", "fluid", density=1000.0, bulk_modulus=2e3, viscosity=0.8)
    m.add_material(
        "sand",
        "sand",
        density=1500.0,
        youngs_modulus=3e3,
        poisson_ratio=0.3,
        friction_angle=30.0,
        cohesion=sand_cohesion,
    )
    m.add_box([0.15, 0.2], [0.35, 0.33], "jelly", velocity=[0.5, -1.0], actuator=0)
    m.add_box([0.6, 0.2], [0.75, 0.38], "water", velocity=[-0.3, -1.0])
    m.add_box([0.38, 0.2], [0.56, 0.32], "sand", velocity=[0.4, -1.5])
    return m


def colliders(dim: int = 2) -> list:
    """2D: a moving sphere and a tilted moving plane with friction (smooth signed distances, so their position and
    size have gradients a finite difference can check). 3D: a moving box (its normal jumps across the medial axis
    inside it, so only its velocity and friction are smooth parameters)."""
    if dim == 2:
        return [
            MPMCollider("sphere", [0.68, 0.12], 0.07, velocity=[0.1, 0.05], friction=0.4),
            MPMCollider("plane", [0.0, 0.2], normal=[0.3, 1.0], velocity=[0.02, 0.01], friction=0.2),
        ]
    return [MPMCollider("box", [0.45, 0.42, 0.12], [0.2, 0.2, 0.1], velocity=[0.05, 0.02, 0.1], friction=0.4)]


def oscillating_bar(E: float = 1e4, rho: float = 1000.0, amplitude: float = 0.01):
    """A free 0.5 x 0.125 m bar (16 x 4 cells of 1/32 m, Poisson ratio 0) in its first longitudinal mode:
    v_x = A cos(pi (x - x0) / L). Returns (model, x0, L)."""
    m = MPMModel(dim=2, res=32, dx=1.0 / 32, source="bar")
    m.add_material("rubber", "elastic", density=rho, youngs_modulus=E, poisson_ratio=0.0)
    x0, L = 0.25, 0.5
    m.add_box([x0, 0.4], [x0 + L, 0.525], "rubber")
    m.velocities[0][:, 0] = amplitude * np.cos(np.pi * (m.positions[0][:, 0] - x0) / L)
    return m, x0, L


def dam_break_column(cells: int = 16, a: float = 0.2):
    """Martin and Moyce's square water column of side a against the left wall, `cells` cells across."""
    dx = a / cells
    bound = 3
    res = (int(5.5 * cells) + 2 * bound + 2, int(1.5 * cells) + 2 * bound + 2)
    m = MPMModel(dim=2, res=res, dx=dx, source="dam_break")
    c = 10.0 * np.sqrt(2 * 9.81 * a)  # sound speed: ten times the surge speed sqrt(2 g a)
    m.add_material("water", "fluid", density=1000.0, bulk_modulus=1000.0 * c**2, viscosity=1e-3)
    m.add_box([bound * dx] * 2, [bound * dx + a] * 2, "water")
    return m, 0.5 * dx / c, bound * dx


__all__ = ["MPMSystem", "mixed_model", "colliders", "oscillating_bar", "dam_break_column"]
