"""Run the peer benchmarks and the matching diffsim cases on this machine, now, and print diffsim/peer ratios.

    pip install -e '.[bench]'          # warp-lang 1.9.1, phiflow 3.4 with JAX (optional extras, never for tests)
    python benchmarks/peers/run_peers.py [--json FILE] [--python PEER_PYTHON]

--python runs the peers with another interpreter (a separate venv holding the extras). Each measurement runs in
its own process; the table gives seconds per optimization iteration (forward + backward) and the ratio, per step
where the two ran different numbers of steps.
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
    ("smoke_target2d 64^2 (PhiFlow: 20 steps)", "smoke64", ["phiflow_smoke_target.py", "--res", "64", "--steps", "20"]),
    ("smoke_target2d 128^2 (PhiFlow: 20 steps)", "smoke_target2d",
     ["phiflow_smoke_target.py", "--res", "128", "--steps", "20"]),
]


def run_json(cmd, env=None) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--python", default=sys.executable, help="interpreter with the peer packages")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for label, case, peer in PAIRS:
        ours = run_json([sys.executable, "-m", "diffsim.bench", case, "--in-process", "--repeat", str(args.repeat)])
        theirs = run_json([args.python, str(HERE / peer[0]), *peer[1:]], env=dict(os.environ))
        ratio = None
        if "total_s" in ours and "seconds_per_iteration" in theirs:
            # per step, where the two ran different numbers of steps
            ours_steps, their_steps = ours.get("steps"), theirs.get("steps")
            scale = their_steps / ours_steps if ours_steps and their_steps else 1.0
            ratio = ours["total_s"] * scale / theirs["seconds_per_iteration"]
        rows.append({"task": label, "diffsim": ours, "peer": theirs, "ratio": ratio})
        a = f"{ours['total_s']:.4f}" if "total_s" in ours else ours.get("error", "?")[:30]
        b = f"{theirs['seconds_per_iteration']:.4f}" if "seconds_per_iteration" in theirs else theirs.get(
            "error", "?")[:30]
        name = theirs.get("peer", peer[0])
        print(f"{label:34s} diffsim {a:>10s} s/it   {name} {b:>10s} s/it   ratio "
              f"{'-' if ratio is None else f'{ratio:.3f}'}", flush=True)
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump({"date": time.strftime("%Y-%m-%d"), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
