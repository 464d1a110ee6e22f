"""Every subcommand through the real command (a subprocess), with few steps and iterations."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from diffsim.scene import load_scene
from tests.cli.conftest import ROOT, SCENES, SYSID, diffsim, ok

COMMANDS = ("run", "params", "optimize", "gradcheck", "render", "info", "demo", "bench")


def gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        assert im.format == "GIF"
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
    return frames


def assert_animated(path, min_frames: int = 3) -> None:
    frames = gif_frames(path)
    assert len(frames) >= min_frames
    assert frames[0].shape[1] == 640 and frames[0].shape[0] >= 200
    assert any(np.abs(f.astype(int) - frames[0]).sum() > 0 for f in frames[1:]), "all frames are the same"


def no_temporary_files(folder) -> None:
    leftovers = [p.name for p in folder.rglob(".*") if p.is_file()]
    assert not leftovers, leftovers


def test_help_lists_every_command(tmp_path):
    proc = ok(diffsim("--help", cwd=tmp_path))
    for name in COMMANDS:
        assert name in proc.stdout
    assert diffsim(cwd=tmp_path).returncode == 2  # no command


def test_console_script_version(tmp_path):
    proc = ok(diffsim("--version", cwd=tmp_path, script=True))
    assert proc.stdout.strip().startswith("diffsim ")


def test_run_writes_trajectory_and_resolved_scene(tmp_path):
    proc = ok(diffsim("run", SYSID, "--out", "out", "--steps", "20", cwd=tmp_path))
    assert "wrote out/trajectory.npz, out/scene.toml" in proc.stdout
    with np.load(tmp_path / "out" / "trajectory.npz", allow_pickle=False) as npz:
        assert npz["x"].shape == npz["v"].shape == (21, 4, 2)  # frame axis first; batch 1 squeezed
        assert list(npz["frame"]) == list(range(21))
        np.testing.assert_allclose(npz["time"], np.arange(21) * 0.0025)
        assert npz["edges"].shape == (6, 2) and np.isnan(npz["ground"])
        meta = json.loads(str(npz["meta"]))
    assert meta["system"] == "springs" and meta["dt"] == 0.0025 and meta["steps"] == 20
    resolved = load_scene(tmp_path / "out" / "scene.toml")
    assert resolved.steps == 20 and resolved.data["springs"] == load_scene(SYSID).data["springs"]
    no_temporary_files(tmp_path / "out")


def test_run_quiet_prints_nothing_and_render_animates(tmp_path):
    proc = ok(diffsim("run", "walker2d", "--out", "w", "--steps", "60", "--render", "--quiet", cwd=tmp_path))
    assert proc.stdout == "" and proc.stderr == ""
    with np.load(tmp_path / "w" / "trajectory.npz") as npz:
        assert npz["act"].shape == (60, 8) and npz["x"].shape == (61, 18, 2)
    assert_animated(tmp_path / "w" / "animation.gif")


def test_quiet_silences_taichi_warnings_too(tmp_path):
    # a kernel cache whose lock another process holds: Taichi warns on stderr, and --quiet must silence it too
    cache = tmp_path / "ticache"
    cache.mkdir()
    (cache / "ticache.lock").touch()
    env = {"TI_OFFLINE_CACHE_FILE_PATH": str(cache)}
    loud = ok(
        diffsim("run", "walker2d", "--out", "w", "--steps", "5", cwd=tmp_path, env=env, taichi_log=True)
    )
    assert "ticache.lock" in loud.stderr
    quiet = ok(
        diffsim(
            "run", "walker2d", "--out", "w", "--steps", "5", "--quiet", cwd=tmp_path, env=env, taichi_log=True
        )
    )
    assert quiet.stdout == "" and quiet.stderr == ""


def test_params_table_and_json(tmp_path):
    text = ok(diffsim("params", SYSID, cwd=tmp_path)).stdout
    assert "springs.stiffness" in text and "70 (all 6)" in text
    data = json.loads(ok(diffsim("params", SYSID, "--json", "--set", "gravity=0,-5", cwd=tmp_path)).stdout)
    params = data["params"]
    assert params["springs.stiffness"]["value"] == [70.0] * 6 and params["springs.stiffness"]["fit"] is True
    assert params["springs.damping"]["transform"] == "log" and params["springs.damping"]["bounds"] == [
        0.0,
        None,
    ]
    assert params["gravity"]["value"] == [0.0, -5.0] and params["gravity"]["fit"] is False
    assert params["initial.position"]["shape"] == [4, 2]


def test_optimize_writes_results(tmp_path):
    proc = ok(diffsim("optimize", "walker2d", "--out", "o", "--steps", "40", "--iters", "2", cwd=tmp_path))
    out = tmp_path / "o"
    result = json.loads((out / "result.json").read_text())
    for key in ("final_loss", "best_loss", "loss_history", "iterations", "wall_time_s", "params", "stopped"):
        assert key in result
    assert result["iterations"] == 2 and len(result["loss_history"]) == 2
    assert set(result["params"]) == {"controller.w0", "controller.b0", "controller.w1", "controller.b1"}
    assert np.asarray(result["params"]["controller.w1"]).shape == (8, 32)
    with open(out / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["iteration"]) for r in rows] == [0, 1]
    assert float(rows[0]["loss"]) == pytest.approx(result["loss_history"][0])
    for name in ("loss.png", "scene.toml", "before.gif", "after.gif"):
        assert (out / name).stat().st_size > 0, name
    assert_animated(out / "after.gif")
    assert "wrote o/result.json" in proc.stdout
    no_temporary_files(out)


def test_optimize_checkpointed_with_flags(tmp_path):
    ok(
        diffsim(
            "optimize",
            SYSID,
            "--out",
            "o",
            "--steps",
            "30",
            "--iters",
            "3",
            "--optimizer",
            "adam",
            "--lr",
            "0.05",
            "--checkpoint",
            "8",
            "--no-render",
            "--quiet",
            cwd=tmp_path,
        )
    )
    result = json.loads((tmp_path / "o" / "result.json").read_text())
    assert result["optimizer"]["name"] == "adam" and result["optimizer"]["lr"] == 0.05
    assert result["iterations"] == 3 and not (tmp_path / "o" / "after.gif").exists()
    scene = load_scene(tmp_path / "o" / "scene.toml")
    assert scene.data["sim"]["storage"] == "checkpointed" and scene.data["sim"]["checkpoint_every"] == 8


def test_gradcheck_text_json_and_failure(tmp_path):
    text = ok(diffsim("gradcheck", SYSID, "--steps", "30", cwd=tmp_path)).stdout
    assert "springs.stiffness" in text and text.strip().endswith("passed")
    proc = ok(
        diffsim(
            "gradcheck", SYSID, "--steps", "30", "--json", "--fit", "springs.damping", "gravity", cwd=tmp_path
        )
    )
    report = json.loads(proc.stdout)
    assert report["passed"] is True and set(report["params"]) == {"springs.damping", "gravity"}
    assert report["params"]["gravity"]["max_rel_error"] < 1e-6
    failing = diffsim("gradcheck", SYSID, "--steps", "30", "--json", "--tolerance", "1e-300", cwd=tmp_path)
    assert failing.returncode == 1 and json.loads(failing.stdout)["passed"] is False


def test_render_trajectory_and_scene(tmp_path, sysid_truth):
    ok(diffsim("render", sysid_truth, "--out", "truth.gif", cwd=tmp_path))
    assert_animated(tmp_path / "truth.gif")
    ok(diffsim("render", SYSID, "--out", "last.png", "--steps", "50", cwd=tmp_path))
    with Image.open(tmp_path / "last.png") as im:
        assert im.format == "PNG" and im.size[0] == 640
        assert len(np.unique(np.asarray(im.convert("L")))) > 2  # something was drawn


def test_render_3d_scene(tmp_path):
    proc = ok(
        diffsim("render", "cube3d", "--out", "cube.gif", "--steps", "120", "--stride", "20", cwd=tmp_path)
    )
    renderer = proc.stdout.strip().rsplit("(", 1)[-1].rstrip(")")
    if os.environ.get("DIFFSIM_REQUIRE_VULKAN") == "1":
        assert renderer == "ggui"
    frames = gif_frames(tmp_path / "cube.gif")
    assert len(frames) >= 5 and frames[0].shape == (480, 640, 3)
    assert np.abs(frames[-1].astype(int) - frames[0]).sum() > 0


def test_info(tmp_path):
    info = json.loads(ok(diffsim("info", "--json", cwd=tmp_path)).stdout)
    assert info["diffsim"] and "cpu" in info["backends"] and "springs" in info["systems"]
    assert {"walker2d", "springs_sysid"} <= set(info["scenes"])
    assert isinstance(info["ggui"], bool)
    if os.environ.get("DIFFSIM_REQUIRE_VULKAN") == "1":
        assert info["vulkan"] and info["ggui"]
    text = ok(diffsim("info", "--no-probe", cwd=tmp_path)).stdout
    assert text.startswith("diffsim ") and "backends:" in text and "Vulkan:" in text


@pytest.mark.slow  # compiles and renders the walker in a subprocess: ~1 min on 2 cores
def test_demo(tmp_path):
    proc = ok(diffsim("demo", "--iters", "2", "--out", "demo", cwd=tmp_path))
    for name in ("result.json", "loss.png", "before.gif", "after.gif"):
        assert (tmp_path / "demo" / name).exists(), name
    assert "demo: results in demo/" in proc.stdout
    assert json.loads((tmp_path / "demo" / "result.json").read_text())["iterations"] == 2


def test_quiet_demo_prints_nothing(tmp_path):
    proc = ok(diffsim("-q", "demo", "--iters", "1", "--no-render", "--out", "demo", cwd=tmp_path))
    assert proc.stdout == "" and proc.stderr == ""
    assert json.loads((tmp_path / "demo" / "result.json").read_text())["iterations"] == 1


def test_bench_forwards_its_arguments(tmp_path):
    """`diffsim bench ARGS` calls diffsim.bench.main(ARGS) and exits with its return value."""
    code = textwrap.dedent("""
        import sys, types
        fake = types.ModuleType("diffsim.bench")
        fake.main = lambda argv: print("ARGV", argv) or 3
        sys.modules["diffsim.bench"] = fake
        import diffsim
        diffsim.bench = fake
        from diffsim.cli import main
        sys.exit(main(["bench", "scenes/walker2d.toml", "--json", "b.json", "--arch", "cpu", "--repeat", "2"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 3, proc.stderr
    assert (
        "ARGV ['scenes/walker2d.toml', '--json', 'b.json', '--arch', 'cpu', '--repeat', '2']" in proc.stdout
    )


def test_bench_module_is_reachable(tmp_path):
    if importlib.util.find_spec("diffsim.bench") is None:
        pytest.skip("diffsim.bench not written yet")
    proc = diffsim("bench", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow  # compiles a smoke system in a subprocess
def test_run_and_render_draw_a_smoke_grid(tmp_path):
    """A grid trajectory (smoke) is drawn as an image of its density, by `run --render` and by `render` of the
    saved file (which has no copy axis)."""
    scene = str(SCENES / "smoke_target2d.toml")
    ok(
        diffsim(
            "run",
            scene,
            "--set",
            "grid.resolution=[16, 16]",
            "--set",
            "initial[0].cells=2",
            "--steps",
            "4",
            "--out",
            "r",
            "--render",
            "--quiet",
            cwd=tmp_path,
        )
    )
    assert (tmp_path / "r" / "animation.gif").stat().st_size > 1000
    proc = ok(diffsim("render", "r/trajectory.npz", "--out", "again.gif", cwd=tmp_path))
    assert "again.gif (matplotlib)" in proc.stdout
    assert (tmp_path / "again.gif").stat().st_size > 1000
