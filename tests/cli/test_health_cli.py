"""`--health` on optimize and gradcheck: the report files and the verdict line."""

import csv

from tests.cli.conftest import SYSID, diffsim, ok


def test_optimize_and_gradcheck_write_the_health_report(tmp_path):
    proc = ok(
        diffsim(
            "optimize",
            "walker2d",
            "--out",
            "o",
            "--steps",
            "40",
            "--iters",
            "1",
            "--health",
            "--no-render",
            cwd=tmp_path,
        )
    )
    assert "gradient health: " in proc.stdout, proc.stdout
    with open(tmp_path / "o" / "health.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["frame"] == "0" and rows[-1]["frame"] == "40"
    assert all(float(r["adjoint_norm"]) >= 0 for r in rows)
    assert (tmp_path / "o" / "health.png").stat().st_size > 0
    proc = ok(diffsim("gradcheck", SYSID, "--steps", "30", "--health", "h", cwd=tmp_path))
    assert "gradient health: " in proc.stdout and proc.stdout.strip().endswith("passed")
    assert (tmp_path / "h" / "health.csv").exists() and (tmp_path / "h" / "health.png").exists()
