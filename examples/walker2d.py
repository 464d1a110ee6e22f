"""Teach the mass-spring walker to walk: an MLP controller optimized with Adam through 680 simulated steps.

    python examples/walker2d.py              # 40 iterations, writes runs/walker2d/{loss.png,before.gif,after.gif,
                                             # result.json}
    python examples/walker2d.py --iters 2 --steps 100 --no-render   # the short mode the tests run

Loss = minus the forward displacement of the centre of mass (m). The distance after each iteration is printed.
"""

import argparse
import json
import os
import sys

import diffsim
from diffsim.systems.springs.robots import walker2d


def build(steps: int = 680, seed: int = 0) -> diffsim.Simulation:
    model = walker2d()
    controller = diffsim.MLP(model.n_actuators, hidden=(32,), n_phases=5, frequency=1.5, seed=seed)
    system = diffsim.SpringSystem(
        model,
        dt=4e-3,
        ground=0.0,
        friction=1.0,
        contact_stiffness=2000.0,
        contact_damping=10.0,
        controller=controller,
    )
    loss = diffsim.CenterOfMassLoss(direction=(1.0, 0.0), maximize=True)
    return diffsim.Simulation(system, steps, loss=loss)


def animate(sim: diffsim.Simulation, path: str) -> None:
    from diffsim.viz import animate_2d

    sim.forward()
    x = sim.trajectory(every=4)["x"][:, 0]
    act = sim.system.model
    springs = [list(s) for s in act.springs]
    animate_2d(x, path, springs=springs, ground_y=0.0, progress=False, title=os.path.basename(path))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--steps", type=int, default=680)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--out", default="runs/walker2d")
    parser.add_argument("--no-render", action="store_true")
    parser.add_argument("--arch", default=None)
    args = parser.parse_args(argv)

    diffsim.init(arch=args.arch)
    sim = build(args.steps)
    os.makedirs(args.out, exist_ok=True)
    if not args.no_render:
        animate(sim, os.path.join(args.out, "before.gif"))

    def report(it, record, _sim):
        print(
            f"iteration {it:3d}  distance {-record['loss']:+.4f} m  "
            f"({record['forward_s'] + record['backward_s']:.3f} s)",
            flush=True,
        )

    result = diffsim.fit(
        sim,
        optimizer=diffsim.Adam(lr=args.lr, clip_norm=1.0),
        iters=args.iters,
        callback=report,
        progress=False,
    )
    print(
        f"best distance {-result.best_loss:.4f} m after {result.iterations} iterations "
        f"({result.wall_time_s:.1f} s)"
    )
    with open(os.path.join(args.out, "result.json"), "w") as fh:  # read by tests/test_examples.py
        json.dump({"loss_history": result.loss_history, "best_loss": result.best_loss}, fh, indent=1)
    if not args.no_render:
        from diffsim.viz import plot_loss

        plot_loss(result.history, os.path.join(args.out, "loss.png"))
        animate(sim, os.path.join(args.out, "after.gif"))
        print(f"wrote {args.out}/before.gif, after.gif, loss.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
