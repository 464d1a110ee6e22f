"""The bouncing-ball task written against NVIDIA Warp's warp.sim (warp-lang==1.9.1), for side-by-side timing.

Warp's own `example_bounce` task: a 1 kg ball (radius 0.1 m) starts at (-0.5, 1, 0) with velocity (5, -5, 0),
bounces off the ground and off a static box (a wall at x = 2), for 0.6 s at 60 Hz x 8 substeps = 288 steps of
semi-implicit Euler with penalty contact (ke = 1e4, kd = 10, mu = 0.2). Loss: squared distance of the final
position to (-2, 1.5, 0). One iteration = forward under a Tape + backward + a gradient step on the initial
velocity, as in Warp's example.

    python benchmarks/peers/warp_bounce.py --iters 20 [--device cpu]

Prints one JSON line: {"peer": "warp", "task": "bounce", "seconds_per_iteration": ..., ...}.
"""

from warp_common import make_iteration, parse_args, start_warp, time_and_report


def main() -> int:
    args = parse_args(iters=20)
    wp = start_warp(args.device)

    @wp.kernel
    def loss_kernel(q: wp.array(dtype=wp.vec3), target: wp.vec3, loss: wp.array(dtype=float)):
        d = q[0] - target
        loss[0] = wp.dot(d, d)

    substeps = 8
    steps, dt = int(0.6 * 60) * substeps, 1.0 / 60.0 / substeps
    ke, kf, kd, mu = 1.0e4, 0.0, 1.0e1, 0.2
    builder = wp.sim.ModelBuilder()
    builder.add_particle(pos=wp.vec3(-0.5, 1.0, 0.0), vel=wp.vec3(5.0, -5.0, 0.0), mass=1.0)
    builder.add_shape_box(
        body=-1, pos=wp.vec3(2.0, 1.0, 0.0), hx=0.25, hy=1.0, hz=1.0, ke=ke, kf=kf, kd=kd, mu=mu
    )
    model = builder.finalize(requires_grad=True)
    model.ground = True
    model.soft_contact_ke, model.soft_contact_kf, model.soft_contact_kd = ke, kf, kd
    model.soft_contact_mu, model.soft_contact_margin, model.soft_contact_restitution = mu, 10.0, 1.0
    integrator = wp.sim.SemiImplicitIntegrator()
    states = [model.state() for _ in range(steps + 1)]
    wp.sim.collide(model, states[0])
    loss = wp.zeros(1, dtype=float, requires_grad=True)

    def launch_loss():
        wp.launch(loss_kernel, dim=1, inputs=[states[-1].particle_q, wp.vec3(-2.0, 1.5, 0.0), loss])

    iteration = make_iteration(wp, model, integrator, states, dt, loss, launch_loss, rate=0.02)
    time_and_report(wp, iteration, args.iters, "bounce", args.device, steps, loss)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
