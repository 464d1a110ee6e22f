"""Run the peer benchmarks and the matching diffsim cases on this machine, now, and print diffsim/peer ratios.

    pip install -e '.[bench]'          # warp-lang 1.9.1, phiflow 3.4 with JAX (optional extras, never for tests)
    python benchmarks/peers/run_peers.py [--json FILE] [--python PEER_PYTHON]

--python runs the peers with another interpreter (a separate venv holding the extras). Each measurement runs in
its own process; the table gives seconds per optimization iteration (forward + backward) and the ratio, per step
where the two ran different numbers of steps.

--concurrent (the default on a machine with two or more cores): diffsim and the peer run at the same time, each
pinned to its own core, for --rounds rounds with the cores swapped between rounds; the ratio is the median of the
rounds' ratios, with their range. Both then see the same phase of a shared host, whose speed can change by 1.5-2x
within minutes (docs/performance.md, Method); run one after the other (--sequential), two measurements can land in
different phases. Each process is serial, so one core each is all it uses.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# (label, diffsim bench case, peer script and its arguments)
PAIRS = [
    ("cloth_throw 17x17, 1920 steps", "cloth_throw", ["warp_cloth_throw.py", "--iters", "3"]),
    ("bounce 288 steps", "bounce", ["warp_bounce.py", "--iters", "10"]),
    # PhiFlow (phiml 1.16 + JAX 0.4.38) fails to trace the 100-step task (docs/performance.md): 20 steps, per step
    (
        "smoke_target2d 64^2 (PhiFlow: 20 steps)",
        "smoke64",
        ["phiflow_smoke_target.py", "--res", "64", "--steps", "20"],
    ),
    (
        "smoke_target2d 128^2 (PhiFlow: 20 steps)",
        "smoke_target2d",
        ["phiflow_smoke_target.py", "--res", "128", "--steps", "20"],
    ),
]


def _parse(returncode: int, stdout: str, stderr: str) -> dict:
    if returncode != 0:
        return {"error": (stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(stdout.strip().splitlines()[-1])


def run_json(cmd, env=None) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    return _parse(proc.returncode, proc.stdout, proc.stderr)


def run_together(cmds, cores, env=None) -> list[dict]:
    """Start every command at once, command i pinned to cores[i]; wait for all of them."""

    def pin(core):
        return lambda: os.sched_setaffinity(0, {core})

    procs = [
        subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
            preexec_fn=pin(core),
        )
        for cmd, core in zip(cmds, cores, strict=True)
    ]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate()
        out.append(_parse(proc.returncode, stdout, stderr))
    return out


def ratio_of(ours: dict, theirs: dict) -> float | None:
    """diffsim's seconds per iteration over the peer's, per step where the two ran different numbers of steps."""
    if "total_s" not in ours or "seconds_per_iteration" not in theirs:
        return None
    ours_steps, their_steps = ours.get("steps"), theirs.get("steps")
    scale = their_steps / ours_steps if ours_steps and their_steps else 1.0
    return ours["total_s"] * scale / theirs["seconds_per_iteration"]


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--python", default=sys.executable, help="interpreter with the peer packages")
    parser.add_argument("--repeat", type=int, default=3)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--concurrent",
        dest="concurrent",
        action="store_true",
        default=None,
        help="run each pair at the same time on two cores, cores swapped between rounds (default "
        "with two or more cores)",
    )
    mode.add_argument("--sequential", dest="concurrent", action="store_false", help="one after the other")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per pair when concurrent (default 2)")
    parser.add_argument("--only", nargs="*", default=None, help="diffsim cases to run (default: every pair)")
    args = parser.parse_args()
    concurrent = can_pin() if args.concurrent is None else args.concurrent
    if concurrent and not can_pin():
        parser.error("--concurrent needs two cores and os.sched_setaffinity")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    cores = sorted(os.sched_getaffinity(0))[:2] if concurrent else None
    rows = []
    for label, case, peer in PAIRS:
        if args.only is not None and case not in args.only:
            continue
        ours_cmd = [sys.executable, "-m", "diffsim.bench", case, "--in-process", "--repeat", str(args.repeat)]
        peer_cmd = [args.python, str(HERE / peer[0]), *peer[1:]]
        rounds = []
        for k in range(args.rounds if concurrent else 1):
            if concurrent:
                pair = (cores[k % 2], cores[(k + 1) % 2])
                ours, theirs = run_together([ours_cmd, peer_cmd], pair, env=dict(os.environ))
            else:
                pair = None
                ours, theirs = run_json(ours_cmd), run_json(peer_cmd, env=dict(os.environ))
            rounds.append({"cores": pair, "diffsim": ours, "peer": theirs, "ratio": ratio_of(ours, theirs)})
            a = f"{ours['total_s']:.4f}" if "total_s" in ours else ours.get("error", "?")[:30]
            b = (
                f"{theirs['seconds_per_iteration']:.4f}"
                if "seconds_per_iteration" in theirs
                else theirs.get("error", "?")[:30]
            )
            r = rounds[-1]["ratio"]
            where = f" (cores {pair[0]}/{pair[1]})" if pair else ""
            print(
                f"{label:34s} diffsim {a:>10s} s/it   {theirs.get('peer', peer[0])} {b:>10s} s/it   ratio "
                f"{'-' if r is None else f'{r:.3f}'}{where}",
                flush=True,
            )
        ratios = sorted(r["ratio"] for r in rounds if r["ratio"] is not None)
        median = (
            ratios[len(ratios) // 2]
            if len(ratios) % 2
            else (sum(ratios[len(ratios) // 2 - 1 : len(ratios) // 2 + 1]) / 2 if ratios else None)
        )
        if len(rounds) > 1 and ratios:
            print(
                f"{'':34s} median ratio {median:.3f} ({ratios[0]:.3f}-{ratios[-1]:.3f}) over {len(ratios)} "
                "rounds",
                flush=True,
            )
        rows.append(
            {
                "task": label,
                "concurrent": concurrent,
                "rounds": rounds,
                "ratio": median,
                "ratio_range": [ratios[0], ratios[-1]] if ratios else None,
                "diffsim": rounds[-1]["diffsim"],
                "peer": rounds[-1]["peer"],
            }
        )
    if args.json_path:
        tmp = f"{args.json_path}.tmp{os.getpid()}"  # written whole, then renamed: never a truncated file
        with open(tmp, "w") as fh:
            json.dump(
                {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}, fh, indent=1
            )
        os.replace(tmp, args.json_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
