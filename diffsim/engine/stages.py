"""Step stages that several systems share, as `ti.func`s over the system object (passed as a template): each runs
as top-level loops of the kernel that calls it, like the system's own stages. (No ``from __future__ import
annotations`` in this module: Taichi reads a function's annotations as objects.)"""

import taichi as ti


@ti.func
def initial_state(system: ti.template(), s: ti.template()):
    """Frame 0 of the positions and velocities from the parameters `system.x0` and `system.v0` (n elements)."""
    for b, i in ti.ndrange(system.batch, system.n):
        s.x[0, b, i] = system.x0.field[system.x0.bi(b), i]
        s.v[0, b, i] = system.v0.field[system.v0.bi(b), i]


@ti.func
def centre_of_mass(system: ti.template(), s: ti.template(), f: ti.template()):
    """Per copy b of frame f: s.com[f, b] = sum m_i x_i, s.vcom[f, b] = sum m_i v_i and s.mtot[f, b] = sum m_i (the
    observation of a controller divides them); the system gives element i's mass (kg) as
    `system._element_mass(b, i)`."""
    ti.loop_config(serialize=ti.static(system.serial))
    for b in range(system.batch):
        s.com[f, b] = ti.Vector.zero(float, system.dim)
        s.vcom[f, b] = ti.Vector.zero(float, system.dim)
        s.mtot[f, b] = 0.0
    ti.loop_config(serialize=ti.static(system.serial))
    for b, i in ti.ndrange(system.batch, system.n):
        mi = system._element_mass(b, i)
        s.com[f, b] += mi * s.x[f, b, i]
        s.vcom[f, b] += mi * s.v[f, b, i]
        s.mtot[f, b] += mi
