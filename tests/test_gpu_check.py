"""The GPU check script's CPU-only path runs end to end (install, benchmark, comparison table)."""

import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_only_path():
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-only", "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("case") and "speed-up" in line)
    row = lines[header + 2].split()
    assert row[0] == "walker2d" and float(row[1]) > 0 and abs(float(row[3]) - 1.0) < 1e-9
