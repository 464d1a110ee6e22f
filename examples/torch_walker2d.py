"""The mass-spring walker trained with a torch.nn.Module policy through `diffsim.torch.Step`: backpropagation
through time across the policy (PyTorch) and the simulator (diffsim), one step at a time.

    python examples/torch_walker2d.py                      # 40 iterations of 680 steps, prints the distance
    python examples/torch_walker2d.py --compare            # also trains the in-kernel MLP from the same weights
    python examples/torch_walker2d.py --iters 2 --steps 60 # the short mode the tests run

The policy is the in-kernel `diffsim.MLP` written in torch: tanh layers on the observation (positions and velocities
relative to the centre of mass) and phase signals sin/cos(2 pi nu_j t); it starts from that controller's initial
weights, and both train those weights only with Adam (lr 0.003, gradient norm clipped to 1). Loss = minus the forward
displacement of the centre of mass (m). Needs the extra diffsim[torch].
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

import diffsim
import diffsim.torch as dt
from diffsim.systems.springs.robots import walker2d

sys.path.insert(0, os.path.dirname(__file__))
from walker2d import build as build_mlp_walker  # noqa: E402

DT = 4e-3
FREQUENCY = 1.5
N_PHASES = 5


class Policy(torch.nn.Module):
    """diffsim.MLP(hidden=(32,), n_phases=5, frequency=1.5) as a torch module."""

    def __init__(self, weights: dict[str, np.ndarray], masses: np.ndarray, dtype):
        super().__init__()
        n_layers = len([k for k in weights if k.startswith("controller.w")])
        self.layers = torch.nn.ModuleList()
        for k in range(n_layers):
            w = torch.tensor(weights[f"controller.w{k}"], dtype=dtype)
            layer = torch.nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
            with torch.no_grad():
                layer.weight.copy_(w)
                layer.bias.copy_(torch.tensor(weights[f"controller.b{k}"], dtype=dtype))
            self.layers.append(layer)
        self.register_buffer("mass", torch.tensor(masses, dtype=dtype))
        self.register_buffer("nu", FREQUENCY * torch.arange(1, N_PHASES + 1, dtype=dtype))

    def observe(self, x: torch.Tensor, v: torch.Tensor, t: float) -> torch.Tensor:
        """[batch, 2 dim n + 2 n_phases]: per point (x - com, v - vcom), then sin/cos(2 pi nu_j t) per phase."""
        m = self.mass[None, :, None]
        com = (m * x).sum(1, keepdim=True) / m.sum()
        vcom = (m * v).sum(1, keepdim=True) / m.sum()
        rel = torch.cat([x - com, v - vcom], dim=2).reshape(x.shape[0], -1)
        arg = 2 * math.pi * self.nu * t
        phases = torch.stack([torch.sin(arg), torch.cos(arg)], dim=1).reshape(-1)
        return torch.cat([rel, phases.expand(x.shape[0], -1)], dim=1)

    def forward(self, x, v, t):
        h = self.observe(x, v, t)
        for layer in self.layers:
            h = torch.tanh(layer(h))
        return h


def build_step(steps: int):
    model = walker2d()
    system = diffsim.SpringSystem(
        model,
        dt=DT,
        ground=0.0,
        friction=1.0,
        contact_stiffness=2000.0,
        contact_damping=10.0,
        controller=diffsim.OpenLoop(model.n_actuators, 1),
    )
    return system, dt.Step(system)


def centre_x(x: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    return (mass[None, :] * x[..., 0]).sum(1) / mass.sum()


def train_torch(iters: int, steps: int, lr: float, seed: int = 0, log=print) -> list[float]:
    """Distances (m) after each iteration's rollout, before its update."""
    mlp_sim = build_mlp_walker(steps, seed=seed)  # the in-kernel controller, for its initial weights
    weights = {p.name: p.numpy() for p in mlp_sim.system.params if p.name.startswith("controller.")}
    system, step = build_step(steps)
    real = torch.float64 if diffsim.runtime.current()["precision"] == "f64" else torch.float32
    policy = Policy(weights, system.params["particles.mass"].numpy(), real)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    s0 = step.initial_state(dtype=real)
    distances = []
    for it in range(iters):
        t0 = time.perf_counter()
        s = s0
        for t in range(steps):
            s = step(s, policy(s["x"], s["v"], t * DT), t)
        distance = (centre_x(s["x"], policy.mass) - centre_x(s0["x"], policy.mass)).sum()
        opt.zero_grad()
        (-distance).backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        distances.append(distance.item())
        log(
            f"torch policy  iteration {it:3d}  distance {distances[-1]:+.4f} m  ({time.perf_counter() - t0:.2f} s)"
        )
    return distances


def train_mlp(iters: int, steps: int, lr: float, seed: int = 0, log=print) -> list[float]:
    sim = build_mlp_walker(steps, seed=seed)
    names = [
        p.name for p in sim.system.params if p.name.startswith("controller.")
    ]  # the policy's weights only
    result = diffsim.fit(
        sim, names=names, optimizer=diffsim.Adam(lr=lr, clip_norm=1.0), iters=iters, progress=False
    )
    distances = [-v for v in result.loss_history]
    for it, d in enumerate(distances):
        log(f"in-kernel MLP iteration {it:3d}  distance {d:+.4f} m")
    return distances


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--steps", type=int, default=680)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument(
        "--compare", action="store_true", help="also train the in-kernel MLP from the same weights"
    )
    parser.add_argument("--out", default="runs/torch_walker2d")
    args = parser.parse_args(argv)

    diffsim.init()
    torch.manual_seed(0)
    result = {"torch": train_torch(args.iters, args.steps, args.lr)}
    if args.compare:
        result["mlp"] = train_mlp(args.iters, args.steps, args.lr)
    best = {k: max(v) for k, v in result.items()}
    print("best distance: " + ", ".join(f"{k} {d:.4f} m" for k, d in best.items()))
    if args.compare:
        print(f"torch policy / in-kernel MLP: {best['torch'] / best['mlp']:.3f}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "result.json"), "w") as fh:
        # loss_history (minus the torch policy's distances) is what tests/test_examples.py reads
        json.dump(
            {"distances": result, "best": best, "loss_history": [-d for d in result["torch"]]}, fh, indent=1
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
