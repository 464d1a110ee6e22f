"""System identification with torch.optim.LBFGS through `diffsim.torch.simulate`: recover the six spring stiffnesses
of a mass-spring square from its measured trajectory.

    python examples/torch_sysid.py                 # 100 steps, prints the loss and the stiffness error per iteration
    python examples/torch_sysid.py --iters 3      # the short mode the tests run

The square (4 masses, 6 springs, f64) is thrown onto the ground; its "measured" trajectory is simulated with the
true stiffnesses (400..650 N/m). The fit starts from 300 N/m for every spring and minimises the mean squared
distance (mm^2) between simulated and measured positions at every frame, a loss written in torch on the trajectory that
`simulate` returns; the optimiser works on log-stiffness (the stiffness stays positive). Needs diffsim[torch].
"""

import argparse
import json
import os
import sys

import numpy as np

import diffsim

TRUE_STIFFNESS = np.array([400.0, 450.0, 500.0, 550.0, 600.0, 650.0])
GUESS = 300.0
STEPS = 100


def build(steps: int = STEPS) -> diffsim.Simulation:
    """The square, sliding and bouncing on the ground (2D, dt 2 ms)."""
    m = diffsim.SpringModel(dim=2)
    for k, p in enumerate([[0.0, 0.05], [0.1, 0.05], [0.0, 0.15], [0.1, 0.17]]):
        m.add_particle(p, velocity=[0.5, -0.3 + 0.05 * k], mass=0.2 * (1 + 0.1 * k))
    for (a, b), k in zip([(0, 1), (0, 2), (1, 3), (2, 3), (0, 3), (1, 2)], TRUE_STIFFNESS, strict=True):
        m.add_spring(a, b, k, 1.0)
    system = diffsim.SpringSystem(
        m, dt=2e-3, ground=0.0, friction=0.6, contact_stiffness=3000.0, contact_damping=5.0
    )
    return diffsim.Simulation(system, steps)


def measured(sim) -> np.ndarray:
    """The trajectory [frames, batch, points, 2] (m) with the true stiffnesses."""
    sim.system.params["springs.stiffness"].set(TRUE_STIFFNESS)
    sim.forward()
    return sim.trajectory(["x"])["x"]


def main(argv=None) -> int:
    import torch  # noqa: PLC0415

    import diffsim.torch as dt  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", default="runs/torch_sysid")
    args = parser.parse_args(argv)

    diffsim.init(precision="f64")
    sim = build(args.steps)
    target = torch.from_numpy(measured(sim))
    log_k = torch.full((6,), np.log(GUESS), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [log_k],
        lr=1.0,
        max_iter=10,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-12,
        tolerance_change=0.0,
    )

    def closure():
        opt.zero_grad()
        x = dt.simulate(sim, {"springs.stiffness": torch.exp(log_k)}, outputs=("x",))["x"]
        loss = 1e6 * ((x - target) ** 2).sum(-1).mean()  # mm^2
        loss.backward()
        return loss

    history = []
    for it in range(args.iters):
        loss = opt.step(closure)  # the loss at the start of the iteration
        history.append(loss.item())
        err = np.abs(np.exp(log_k.detach().numpy()) / TRUE_STIFFNESS - 1).max()
        print(f"iteration {it:2d}  loss {loss.item():.3e} mm^2  largest stiffness error {100 * err:.3f} %")
    print("stiffness (N/m):", np.round(np.exp(log_k.detach().numpy()), 3).tolist())
    write_result(args.out, history, np.exp(log_k.detach().numpy()))
    return 0


def write_result(out: str, history: list, stiffness) -> None:
    """result.json: the loss at each iteration (mm^2) and the identified stiffnesses (read by tests/test_examples.py)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "result.json"), "w") as fh:
        json.dump({"loss_history": history, "stiffness": list(map(float, stiffness))}, fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
