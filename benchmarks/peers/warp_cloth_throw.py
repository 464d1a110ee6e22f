"""The cloth-throw task written against NVIDIA Warp's warp.sim (warp-lang==1.9.1), for side-by-side timing.

A 17x17-vertex cloth (16x16 cells of 1/16 m, 1 kg per vertex), triangle stiffness 1e4, damping 100, drag 5,
lift 10, thrown with initial velocity (0.1, 0.1, 0) and no ground, simulated for 2 s at 60 Hz x 16 substeps =
1,920 steps of semi-implicit Euler. Loss: squared distance of the centre of mass to (8, 0, 0). One iteration =
forward under a Tape + backward + a gradient step on the initial velocities, as in Warp's own example.

    python benchmarks/peers/warp_cloth_throw.py --iters 5 [--device cpu]

Prints one JSON line: {"peer": "warp", "task": "cloth_throw", "seconds_per_iteration": ..., ...}.
"""

import math

from warp_common import make_iteration, parse_args, start_warp, time_and_report


def main() -> int:
    args = parse_args(iters=5)
    wp = start_warp(args.device)

    @wp.kernel
    def com_kernel(q: wp.array(dtype=wp.vec3), n: int, com: wp.array(dtype=wp.vec3)):
        wp.atomic_add(com, 0, q[wp.tid()] / float(n))

    @wp.kernel
    def loss_kernel(com: wp.array(dtype=wp.vec3), target: wp.vec3, loss: wp.array(dtype=float)):
        d = com[0] - target
        loss[0] = wp.dot(d, d)

    steps, dt = 2 * 60 * 16, 1.0 / 60.0 / 16
    builder = wp.sim.ModelBuilder()
    builder.default_particle_radius = 0.01
    builder.add_cloth_grid(
        pos=wp.vec3(0.0, 0.0, 0.0),
        vel=wp.vec3(0.1, 0.1, 0.0),
        rot=wp.quat_from_axis_angle(wp.vec3(1.0, 0.0, 0.0), -math.pi * 0.25),
        dim_x=16,
        dim_y=16,
        cell_x=1.0 / 16,
        cell_y=1.0 / 16,
        mass=1.0,
        tri_ke=1e4,
        tri_ka=1e4,
        tri_kd=100.0,
        tri_lift=10.0,
        tri_drag=5.0,
    )
    model = builder.finalize()
    model.ground = False
    integrator = wp.sim.SemiImplicitIntegrator()
    states = [model.state(requires_grad=True) for _ in range(steps + 1)]
    com = wp.zeros(1, dtype=wp.vec3, requires_grad=True)
    loss = wp.zeros(1, dtype=float, requires_grad=True)

    def launch_loss():
        com.zero_()
        wp.launch(
            com_kernel, dim=model.particle_count, inputs=[states[-1].particle_q, model.particle_count, com]
        )
        wp.launch(loss_kernel, dim=1, inputs=[com, wp.vec3(8.0, 0.0, 0.0), loss])

    iteration = make_iteration(wp, model, integrator, states, dt, loss, launch_loss, rate=5.0)
    time_and_report(
        wp, iteration, args.iters, "cloth_throw", args.device, steps, loss, vertices=model.particle_count
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
