"""Benchmarks: seconds per optimization iteration (forward + backward), steps per second, compile time, memory.

    python -m diffsim.bench                 # the whole suite
    python -m diffsim.bench walker2d --repeat 20 --json out.json
    diffsim bench walker2d                  # the same through the command line

Each case runs in its own subprocess so that its peak memory (the process's max resident set) and its compile time
are its own. Per case: the first iteration (compile included; Taichi's offline cache makes it faster on later runs,
`--cold` points the cache at an empty folder to measure a cold start), then `repeat` timed iterations, reported as
the median with min and max. Memory: the bytes held by state and gradient buffers (counted from the field sizes)
and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

CASES: dict[str, Callable] = {}


def case(name: str):
    def register(fn):
        CASES[name] = fn
        return fn

    return register


def _walker_sim(steps=680, storage="full", k=None):
    import diffsim
    from diffsim.systems.springs.robots import walker2d

    model = walker2d()
    ctrl = diffsim.MLP(model.n_actuators, hidden=(32,), n_phases=5, frequency=1.5, seed=0)
    system = diffsim.SpringSystem(
        model, dt=4e-3, ground=0.0, contact_stiffness=2000.0, contact_damping=10.0, controller=ctrl
    )
    loss = diffsim.CenterOfMassLoss(direction=(1.0, 0.0), maximize=True)
    return diffsim.Simulation(system, steps, loss=loss, storage=storage, checkpoint_every=k)


@case("walker2d")
def walker2d():
    """Mass-spring walker: 18 masses, 41 springs, MLP 82-32-8, 680 steps (target: <= 0.06 s/iteration)."""
    return _walker_sim(), "fit"


@case("walker2d_checkpointed")
def walker2d_checkpointed():
    """The walker with checkpointing every 50 steps (one extra forward per backward)."""
    return _walker_sim(storage="checkpointed", k=50), "fit"


@case("walker2d_20k_full")
def walker2d_20k_full():
    """20,000-step walker rollout, full storage: memory baseline for checkpointing."""
    return _walker_sim(steps=20_000), "fit"


@case("walker2d_20k_checkpointed")
def walker2d_20k_checkpointed():
    """20,000-step walker rollout, checkpointed every 50 steps (target: <= 1/5 of full's buffer memory)."""
    return _walker_sim(steps=20_000, storage="checkpointed", k=50), "fit"


def _spring_grid(n):
    import diffsim

    model = diffsim.SpringModel(dim=2)
    h = 1.0 / (n - 1)
    for j in range(n):
        for i in range(n):
            model.add_particle([i * h, 0.5 + j * h], mass=1.0 / n**2)
    idx = lambda i, j: j * n + i  # noqa: E731
    for j in range(n):
        for i in range(n):
            for di, dj in ((1, 0), (0, 1), (1, 1)):
                if i + di < n and j + dj < n:
                    # k / m = 1e4 s^-2 at every size, so one dt (omega dt ~ 0.03) is stable for all sizes
                    model.add_spring(
                        idx(i, j), idx(i + di, j + dj), stiffness=1e4 / n**2, damping=1e-4 / n**2
                    )
    system = diffsim.SpringSystem(
        model, dt=2e-4, ground=0.0, contact_stiffness=1e4 / n**2, contact_damping=0.0
    )
    loss = diffsim.CenterOfMassLoss(direction=(1.0, 0.0))
    return diffsim.Simulation(system, 200, loss=loss)


for _n in (16, 32, 64, 128):
    CASES[f"springs_grid{_n}"] = (lambda n: lambda: (_spring_grid(n), "fit"))(_n)
    CASES[
        f"springs_grid{_n}"
    ].__doc__ = f"{_n}x{_n} spring grid ({_n * _n} masses), 200 steps: scaling series"

# --- cloth ---


def _cloth_throw_sim(overrides=(), **kw):
    from diffsim.scene import load_scene

    _, sim, _ = load_scene("cloth_throw", list(overrides), **kw).build(grads="task")
    return sim


@case("cloth_throw")
def cloth_throw():
    """Cloth throw (scenes/cloth_throw.toml): 17x17 vertices, 512 triangles, 1,920 steps (target: <= 0.2 s)."""
    return _cloth_throw_sim(), "fit"


@case("cloth_throw_quadratic")
def cloth_throw_quadratic():
    """The cloth throw with the quadratic bending model (material.bending_model = "quadratic")."""
    return _cloth_throw_sim(['material.bending_model="quadratic"']), "fit"


@case("cloth_throw_20k_checkpointed")
def cloth_throw_20k_checkpointed():
    """The cloth throw for 20,000 steps, checkpointed every 100 steps: peak memory of a long rollout."""
    return _cloth_throw_sim(steps=20_000, checkpoint_every=100), "fit"


def _cloth_grid(n):
    """An n x n cloth (1 m) hanging from two corners, dt = 1e-4 s (stable up to n = 129), 100 steps."""
    import diffsim
    from diffsim.systems.cloth import ClothModel, ClothSystem

    model = ClothModel.grid(
        size=(1.0, 1.0),
        resolution=(n, n),
        center=(0.0, 0.0, 1.0),
        stretch_modulus=500.0,
        density=0.5,
        bending_stiffness=1e-3,
        stretch_damping=0.001,
    )
    model.pin(0, n - 1)
    system = ClothSystem(model, dt=1e-4)
    loss = diffsim.CenterOfMassLoss(direction=(0.0, 0.0, 1.0))
    return diffsim.Simulation(system, 100, loss=loss)


for _n in (17, 65, 129):
    CASES[f"cloth{_n}"] = (lambda n: lambda: (_cloth_grid(n), "fit"))(_n)
    CASES[f"cloth{_n}"].__doc__ = f"{_n}x{_n} cloth ({_n * _n} vertices), 100 steps: scaling series"


# --- mpm ---


def _mpm_walker_sim(steps=1023):
    import math

    import diffsim
    from diffsim.systems.mpm import MPMSystem
    from diffsim.systems.mpm.robots import walker2d

    model = walker2d()
    ctrl = diffsim.Periodic(4, frequency=20.0 / (2 * math.pi), harmonics=1, init_scale=0.01, seed=0)
    system = MPMSystem(
        model, dt=1e-3, gravity=[0.0, -3.8], walls="sticky", controller=ctrl, actuation_strength=4000.0
    )
    loss = diffsim.CenterOfMassLoss(direction=(1.0, 0.0), maximize=True)
    return diffsim.Simulation(system, steps, loss=loss, storage="checkpointed", checkpoint_every=32)


@case("mpm_walker2d")
def mpm_walker2d():
    """DiffTaichi's diffmpm robot: 2,976 particles, 128^2 grid, 1,023 steps, checkpointed every 32, grid recomputed
    in each step's adjoint (target: <= 2.0 s and 250 MB per iteration; diffmpm: 3.34 s, 726 MB)."""
    return _mpm_walker_sim(), "fit"


def _mpm_block(n_target, steps):
    """An elastic block of about n_target particles (4 per cell) dropped in a 2D box sized to hold it."""
    import diffsim
    from diffsim.systems.mpm import MPMModel, MPMSystem

    cells = int(round((n_target / 4) ** 0.5))  # the block is cells x cells grid cells
    res = 2 * cells + 16
    dx = 1.0 / res
    model = MPMModel(dim=2, res=res, dx=dx, ppc=4, source=f"mpm_block{n_target}")
    model.add_material("rubber", "elastic", density=1000.0, youngs_modulus=5e4, poisson_ratio=0.3)
    lo = 8 * dx
    model.add_box([lo, lo], [lo + cells * dx, lo + cells * dx], "rubber", velocity=[0.5, 0.0])
    system = MPMSystem(model, dt=0.5 * dx / 8.0, walls="slip")
    loss = diffsim.CenterOfMassLoss(direction=(1.0, 0.0))
    return diffsim.Simulation(
        system, steps, loss=loss, storage="checkpointed", checkpoint_every=min(10, steps)
    )


for _n, _steps in ((3_000, 200), (30_000, 40), (300_000, 6)):
    CASES[f"mpm{_n // 1000}k"] = (lambda n, k: lambda: (_mpm_block(n, k), "fit"))(_n, _steps)
    CASES[
        f"mpm{_n // 1000}k"
    ].__doc__ = f"MPM scaling: an elastic block of about {_n:,} particles on a 2D grid, {_steps} steps (forward steps/s)"


# --- smoke ---
def _smoke_target2d_sim(n=128):
    """scenes/smoke_target2d.toml (n x n, 100 steps, semi-Lagrangian, MG-preconditioned CG to a relative 1e-3),
    with a smooth initial velocity of 0.2 m/s so that the pressure solves iterate as they do during the fit (the
    scene starts at rest, where every solve ends at once)."""
    import numpy as np

    from diffsim.scene import load_scene
    from diffsim.systems.smoke.targets import target_image

    overrides = []
    if n != 128:
        path = os.path.join(tempfile.gettempdir(), f"diffsim_smoke_target{n}.npy")
        np.save(path, target_image("taijitu", (n, n)))
        overrides = [
            f"grid.resolution=[{n}, {n}]",
            f"initial[0].cells={max(1, n // 8)}",
            f"task.loss.target={path}",
        ]
    system, sim, _ = load_scene("smoke_target2d", overrides).build(grads="task")
    system.v0.set(_smoke_velocity(system))
    return sim


def _smoke_velocity(system):
    """0.2 m/s: u = sin(2 pi x) cos(3 pi y) + 0.5 cos(pi x), v = cos(2 pi x) sin(3 pi y) on the MAC faces."""
    import numpy as np

    out = np.zeros(system.v0.shape)
    fx, fy = system.model.face_centers(0), system.model.face_centers(1)
    x, y = fx[..., 0], fx[..., 1]
    out[..., 0] = 0.2 * (np.sin(2 * np.pi * x) * np.cos(3 * np.pi * y) + 0.5 * np.cos(np.pi * x))
    out[..., 1] = 0.2 * np.cos(2 * np.pi * fy[..., 0]) * np.sin(3 * np.pi * fy[..., 1])
    return out


@case("smoke_target2d")
def smoke_target2d():
    """Smoke shape matching (scenes/smoke_target2d.toml): 128^2 MAC grid, 100 steps, initial velocity fitted
    (target: <= 0.4 s per iteration, backward <= 2.5 x forward; DiffTaichi's smoke: 0.78 s, 6.2 x)."""
    return _smoke_target2d_sim(128), "fit"


for _n in (64, 128, 256):
    CASES[f"smoke{_n}"] = (lambda n: lambda: (_smoke_target2d_sim(n), "fit"))(_n)
    CASES[f"smoke{_n}"].__doc__ = f"smoke_target2d on a {_n}^2 grid, 100 steps: scaling series"
# --- end smoke ---


# --- rigid ---
def _rigid_scene_sim(name, **kw):
    from diffsim.scene import load_scene

    _, sim, _ = load_scene(name, **kw).build(grads="task")
    return sim


@case("billiards")
def billiards():
    """Billiards (scenes/billiards.toml): 11 balls, 4 cushions, 1,024 steps (target: <= 0.03 s/iteration;
    DiffTaichi's billiards: 0.10-0.14 s)."""
    return _rigid_scene_sim("billiards"), "fit"


@case("rigid_walker2d")
def rigid_walker2d():
    """Rigid walker (scenes/rigid_walker2d.toml): 5 boxes, 4 PD hinge motors, periodic controller, 2,048 steps (target:
    <= 0.1 s/iteration; DiffTaichi's rigid_body robot: 0.46 s)."""
    return _rigid_scene_sim("rigid_walker2d"), "fit"


@case("quadruped3d")
def quadruped3d():
    """3D quadruped (scenes/quadruped3d.toml): a torso and 4 legs, 4 PD hinge motors, periodic controller, 1,500
    steps."""
    return _rigid_scene_sim("quadruped3d"), "fit"


@case("rigid_sysid")
def rigid_sysid():
    """Box system identification (scenes/rigid_sysid.toml): 1 box, 1,200 steps, f32 here (the scene asks f64)."""
    return _rigid_scene_sim("rigid_sysid"), "fit"


def _billiards_rows(rows):
    """A billiards rack of `rows` rows (rows (rows + 1) / 2 balls and the cue ball), 256 steps: contact candidates
    grow as the square of the ball count (every pair is tested)."""
    import diffsim
    from diffsim.systems.rigid import RigidSystem
    from diffsim.systems.rigid.robots import billiards as rack

    model = rack(rows=rows, table=(0.6 + 0.06 * rows, 0.6 + 0.06 * rows), rack=(0.4, 0.3 + 0.03 * rows))
    system = RigidSystem(
        model,
        dt=1e-3,
        gravity=[0.0, 0.0],
        ground=None,
        contact_stiffness=2e4,
        contact_restitution=0.95,
        contact_friction=0.05,
        table_friction=0.2,
    )
    system.params["initial.cue.velocity"].set([[2.0, 0.0]])
    loss = diffsim.CenterOfMassLoss(direction=(1.0, 0.0))
    return diffsim.Simulation(system, 256, loss=loss)


for _rows in (2, 4, 8, 12):
    _nb = _rows * (_rows + 1) // 2 + 1
    CASES[f"billiards_{_nb}balls"] = (lambda r: lambda: (_billiards_rows(r), "fit"))(_rows)
    CASES[
        f"billiards_{_nb}balls"
    ].__doc__ = f"Rigid scaling: {_nb} balls on a table, all pairs tested, 256 steps"


@case("bounce")
def bounce():
    """Warp's bounce task (benchmarks/peers/warp_bounce.py) in 3D, z up: a 1 kg ball of radius 0.1 m thrown at
    (5, 0, -5) m/s from (-0.5, 0, 1) bounces off the ground and a static box (a wall at x = 2), 288 steps of
    1/480 s, contact stiffness 1e4 N/m, restitution 0.85 (Warp's ke = 1e4, kd = 10 on 1 kg: damping ratio
    0.05, e = 0.85), friction 0.2; loss: squared distance of its final position to (-2, 0, 1.5)."""
    import diffsim
    from diffsim.systems.rigid import RigidModel, RigidSystem

    m = RigidModel(dim=3, source="bounce")
    m.add_body([-0.5, 0.0, 1.0], name="ball", mass=1.0, velocity=[5.0, 0.0, -5.0])
    m.add_sphere("ball", 0.1)
    m.add_obstacle([2.0, 0.0, 1.0], [0.25, 1.0, 1.0])
    system = RigidSystem(
        m,
        dt=1.0 / 480.0,
        ground=0.0,
        ground_stiffness=1e4,
        ground_restitution=0.85,
        ground_friction=0.2,
        contact_stiffness=1e4,
        contact_restitution=0.85,
        contact_friction=0.2,
    )
    loss = diffsim.FinalPositionLoss([[-2.0, 0.0, 1.5]])
    return diffsim.Simulation(system, 288, loss=loss), "fit"


# --- end rigid ---


SUITE = [
    "walker2d",
    "walker2d_checkpointed",
    "walker2d_20k_full",
    "walker2d_20k_checkpointed",
    "springs_grid16",
    "springs_grid32",
    "springs_grid64",
    "springs_grid128",
    "cloth_throw",
    "cloth17",
    "cloth65",
    "cloth129",
    "mpm_walker2d",
    "mpm3k",
    "mpm30k",
    "mpm300k",
    "smoke_target2d",
    "smoke64",
    "smoke128",
    "smoke256",
    "billiards",
    "rigid_walker2d",
    "bounce",
    "billiards_4balls",
    "billiards_11balls",
    "billiards_37balls",
    "billiards_79balls",
]


def run_case(name: str, repeat: int, arch: str | None) -> dict:
    """Run one case in this process and return its measurements."""
    import numpy as np

    import diffsim
    from diffsim import runtime

    t0 = time.perf_counter()
    diffsim.init(arch=arch, precision="f32")
    t_init = time.perf_counter() - t0
    sim, _ = CASES[name]()
    # A long rollout's gradient may overflow (an exploding adjoint): the pass is timed all the same and the row says
    # whether its gradient is finite, instead of the engine's error (which reruns the pass to locate the frame).
    sim.check_finite = False
    t_build = time.perf_counter() - t0 - t_init
    t1 = time.perf_counter()
    sim.forward()
    t2 = time.perf_counter()
    sim.backward()
    t3 = time.perf_counter()
    fwd, bwd = [], []
    for _ in range(repeat):
        a = time.perf_counter()
        sim.forward()
        b = time.perf_counter()
        sim.backward()
        c = time.perf_counter()
        fwd.append(b - a)
        bwd.append(c - b)
    tot = [f + b for f, b in zip(fwd, bwd, strict=True)]
    mem = sim.memory_bytes()
    finite = all(bool(np.all(np.isfinite(p.grad()))) for p in sim.system.params.with_grad())
    return {
        "case": name,
        "doc": (CASES[name].__doc__ or "").strip(),
        "arch": runtime.current()["arch"],
        "steps": sim.steps,
        "storage": sim.storage,
        "forward_s": statistics.median(fwd),
        "backward_s": statistics.median(bwd),
        "total_s": statistics.median(tot),
        "total_min_s": min(tot),
        "total_max_s": max(tot),
        "forward_steps_per_s": sim.steps / statistics.median(fwd),
        "first_iteration_s": (t2 - t1) + (t3 - t2),
        "startup_s": t_init + t_build,
        "buffer_bytes": mem["total"],
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "repeat": repeat,
        "gradient_finite": finite,
    }


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def format_table(results: list[dict]) -> str:
    head = (
        f"{'case':28s} {'fwd s':>9s} {'bwd s':>9s} {'total s':>9s} {'(min-max)':>17s} {'steps/s':>10s} "
        f"{'1st it s':>9s} {'buffers MB':>10s} {'peak MB':>8s}  gradient"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['case']:28s} error: {r['error']}")
            continue
        lines.append(
            f"{r['case']:28s} {r['forward_s']:9.4f} {r['backward_s']:9.4f} {r['total_s']:9.4f} "
            f"{r['total_min_s']:8.4f}-{r['total_max_s']:<8.4f} {r['forward_steps_per_s']:10.0f} "
            f"{r['first_iteration_s']:9.2f} {r['buffer_bytes'] / 1e6:10.2f} {r['peak_rss_bytes'] / 1e6:8.0f}  "
            + ("finite" if r.get("gradient_finite", True) else "NON-FINITE")
        )
    return "\n".join(lines)


def compare(base_path: str, other_path: str) -> int:
    """One table: per case, total seconds per iteration on each run and their ratio."""
    runs = []
    for path in (base_path, other_path):
        try:
            with open(path) as fh:
                runs.append(json.load(fh))
        except (OSError, json.JSONDecodeError) as e:
            print(f"diffsim bench: error: {path}: {e}", file=sys.stderr)
            return 2
    by_case = [{r["case"]: r for r in run["results"]} for run in runs]
    archs = [next((r.get("arch") for r in run["results"] if "arch" in r), "?") for run in runs]
    head = f"{'case':28s} {archs[0] + ' s/it':>12s} {archs[1] + ' s/it':>12s} {'speed-up':>9s}"
    print(head)
    print("-" * len(head))
    for name in by_case[0]:
        a, b = by_case[0][name], by_case[1].get(name, {})
        if "total_s" not in a or "total_s" not in b:
            print(f"{name:28s} {'-':>12s} {'-':>12s}")
            continue
        print(f"{name:28s} {a['total_s']:12.4f} {b['total_s']:12.4f} {a['total_s'] / b['total_s']:9.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diffsim bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "cases", nargs="*", help=f"cases to run (default: the suite). Known: {', '.join(CASES)}"
    )
    parser.add_argument("--repeat", type=int, default=10, help="timed iterations per case (default 10)")
    parser.add_argument("--arch", default=None, help="backend (cpu, gpu, cuda, vulkan, metal)")
    parser.add_argument(
        "--json", dest="json_path", default=None, help="write the results as JSON to this file"
    )
    parser.add_argument(
        "--cold", action="store_true", help="empty Taichi kernel cache: measure cold compiles"
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("BASE.json", "OTHER.json"),
        help="print one table comparing two --json results (e.g. CPU and CUDA) and exit",
    )
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    names = args.cases or SUITE
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(
            f"diffsim bench: error: unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}",
            file=sys.stderr,
        )
        return 2
    if args.repeat < 1:
        print("diffsim bench: error: --repeat must be >= 1", file=sys.stderr)
        return 2
    if args.in_process:
        result = run_case(names[0], args.repeat, args.arch)
        print(json.dumps(result))
        return 0
    results = []
    env = dict(os.environ)
    cold_dir = None
    if args.cold:
        cold_dir = tempfile.mkdtemp(prefix="diffsim-bench-cache-")
    for name in names:
        if cold_dir:
            env["TI_OFFLINE_CACHE_FILE_PATH"] = os.path.join(cold_dir, name)
        cmd = [sys.executable, "-m", "diffsim.bench", name, "--in-process", "--repeat", str(args.repeat)]
        if args.arch:
            cmd += ["--arch", args.arch]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            results.append({"case": name, "error": tail})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(
            format_table(results[-1:]).splitlines()[-1] if len(results) > 1 else format_table(results),
            flush=True,
        )
    report = {
        "machine": _machine(),
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cold_cache": args.cold,
        "results": results,
    }
    if args.json_path:
        from diffsim.fileio import write_text_atomic  # noqa: PLC0415

        write_text_atomic(args.json_path, json.dumps(report, indent=1))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
