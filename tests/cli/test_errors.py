"""Bad input: exit code 2 and one line on stderr that names the file, the key and the value."""

from __future__ import annotations

import pytest

from tests.cli.conftest import SYSID, diffsim

BASE = SYSID.read_text()


def one_error_line(proc) -> str:
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("diffsim: error: ")
    return lines[0][len("diffsim: error: ") :]


def write(tmp_path, text: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("steps = 400", "stepz = 400", "bad.toml: sim: unknown key 'stepz' (did you mean 'steps'?)"),
        ("dt = 0.0025", 'dt = "fast"', "bad.toml: sim.dt: must be a number, got 'fast'"),
        ("stiffness = 70.0", "stiffness = -5", "bad.toml: springs[0].stiffness: must be > 0, got -5"),
        ("pinned = true", "pinned = 1", "bad.toml: particles[0].pinned: must be true or false, got 1"),
        (
            'name = "lbfgs"',
            'name = "lbgfs"',
            "bad.toml: task.optimizer.name: must be one of 'adam', 'sgd', 'lbfgs', 'cma', "
            "got 'lbgfs' (did you mean 'lbfgs'?)",
        ),
        ("[ground]", "[ground]\nheight = [0]", "bad.toml: ground.height: must be a number, got [0]"),
        ("[sim]", "[sim]\n[sim]", "bad.toml: invalid TOML at line"),
    ],
)
def test_bad_scene_file(tmp_path, old, new, expected):
    write(tmp_path, BASE.replace(old, new, 1))
    assert one_error_line(diffsim("run", "bad.toml", "--out", "o", cwd=tmp_path)).startswith(expected)
    assert not (tmp_path / "o").exists()  # nothing is written for a bad file


def test_target_and_generated_target_both_given(tmp_path):
    write(tmp_path, BASE.replace('kind = "trajectory"', 'kind = "trajectory"\ntarget = "bad.toml"', 1))
    assert one_error_line(diffsim("optimize", "bad.toml", "--out", "o", cwd=tmp_path)) == (
        "bad.toml: task.loss.target: give either target or [task.loss.generate], not both"
    )


def test_missing_target_file(tmp_path):
    text = BASE.replace('kind = "trajectory"', 'kind = "trajectory"\ntarget = "missing.npz"', 1)
    text = text.replace('[task.loss.generate]\n"springs.stiffness" = 100.0\n"springs.damping" = 0.5\n', "")
    write(tmp_path, text)
    line = one_error_line(diffsim("optimize", "bad.toml", "--out", "o", cwd=tmp_path))
    assert line == f"bad.toml: task.loss.target: file not found: {tmp_path / 'missing.npz'}"
    line = one_error_line(
        diffsim("optimize", SYSID, "--out", tmp_path / "o", "--target", "nope.npz", cwd=tmp_path)
    )
    assert line == "--target: file not found: nope.npz"


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["steps"], "--set: malformed override 'steps' (expected NAME=VALUE)"),
        (["springs[x].stiffness=1"], "--set: malformed override 'springs[x].stiffness=1': bad index [x]"),
        (["=3"], "--set: malformed override '=3': empty NAME"),
        (["sim.steps=many"], "springs_sysid.toml: sim.steps: must be an integer, got 'many'"),
        (
            ["springs[9].damping=1"],
            "springs_sysid.toml: springs: index 9 out of range for 'springs' with 6 entries",
        ),
    ],
)
def test_malformed_set(tmp_path, sets, expected):
    args = [a for s in sets for a in ("--set", s)]
    line = one_error_line(diffsim("run", SYSID, "--out", tmp_path / "o", *args, cwd=tmp_path))
    assert expected in line
    assert line.startswith(("--set", str(SYSID)))


def test_unknown_parameter_in_set_is_named_after_building(tmp_path):
    line = one_error_line(diffsim("params", SYSID, "--set", "springs.stifness=3", cwd=tmp_path))
    assert (
        line
        == "--set springs.stifness: no parameter named 'springs.stifness' (did you mean 'springs.stiffness'?)"
    )


def test_missing_scene_file_and_bad_flags(tmp_path):
    assert (
        one_error_line(diffsim("run", "nope.toml", "--out", "o", cwd=tmp_path)) == "nope.toml: file not found"
    )
    assert one_error_line(diffsim("gradcheck", SYSID, "--precision", "f32", cwd=tmp_path)).startswith(
        "--precision: gradcheck runs in f64"
    )
    assert one_error_line(diffsim("render", SYSID, "--out", "x.avi", cwd=tmp_path)).startswith(
        "x.avi: unknown output suffix '.avi'"
    )
    usage = diffsim("run", SYSID, cwd=tmp_path)  # argparse: --out is required
    assert usage.returncode == 2 and "--out" in usage.stderr


def test_debug_shows_the_traceback(tmp_path):
    path = write(tmp_path, BASE.replace("steps = 400", "stepz = 400"))
    proc = diffsim("run", path, "--out", "o", "--debug", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and proc.stderr.strip().endswith("(did you mean 'steps'?)")


def test_unstable_time_step_is_reported_with_the_frame(tmp_path):
    proc = diffsim("run", SYSID, "--out", tmp_path / "o", "--set", "sim.dt=0.1", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("diffsim: warning: ") and "stability limit" in lines[0]
    assert lines[-1].startswith(f"diffsim: error: {SYSID}: diverging ") and " at frame " in lines[-1]
    assert not (tmp_path / "o" / "trajectory.npz").exists()


# ----------------------------------------------------------------------------------------------------------
# Flags and files checked before any work: exit 2, one line naming the flag or file, nothing written


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["run", SYSID, "--out", "o", "--render", "--fps", "0"],
            "argument --fps: must be a finite number > 0, got 0",
        ),
        (
            ["run", SYSID, "--out", "o", "--render", "--fps", "nan"],
            "argument --fps: must be a finite number > 0",
        ),
        (
            ["optimize", SYSID, "--out", "o", "--fps", "-1"],
            "argument --fps: must be a finite number > 0, got -1",
        ),
        (
            ["render", SYSID, "--out", "a.gif", "--fps", "0"],
            "argument --fps: must be a finite number > 0, got 0",
        ),
        (
            ["run", SYSID, "--out", "o", "--render", "--format", ".mp4"],
            "--format .mp4: writing .mp4 needs ffmpeg",
        ),
        (["optimize", SYSID, "--out", "o", "--format", ".mp4"], "--format .mp4: writing .mp4 needs ffmpeg"),
        (["demo", "--out", "o", "--format", ".mp4"], "--format .mp4: writing .mp4 needs ffmpeg"),
        (["render", SYSID, "--out", "a.mp4"], "a.mp4: writing .mp4 needs ffmpeg"),
        (
            ["render", SYSID, "--out", "a.gif", "--stride", "0"],
            "argument --stride: must be an integer >= 1, got 0",
        ),
        (
            ["render", SYSID, "--out", "a.gif", "--copy", "-1"],
            "argument --copy: must be an integer >= 0, got -1",
        ),
        (
            ["run", SYSID, "--out", "o", "--seed", "-1"],
            "argument --seed: must be an integer in 0..2147483647, got -1",
        ),
        (
            ["run", SYSID, "--out", "o", "--seed", "2147483648"],
            "argument --seed: must be an integer in 0..2147483647",
        ),
        (["gradcheck", SYSID, "--directions", "0"], "argument --directions: must be an integer >= 1, got 0"),
        (
            ["gradcheck", SYSID, "--coordinates", "-1"],
            "argument --coordinates: must be an integer >= 0, got -1",
        ),
        (
            ["gradcheck", SYSID, "--tolerance", "nan"],
            "argument --tolerance: must be a finite number > 0, got nan",
        ),
        (["run", SYSID, "--out", "o", "--params", "list.json"], "list.json: must hold a JSON object"),
        (["optimize", SYSID, "--out", "o", "--params", "list.json"], "list.json: must hold a JSON object"),
        (
            ["run", SYSID, "--out", "o", "--params", "word.json"],
            "word.json: springs.stiffness: must be a finite number",
        ),
        (
            ["run", SYSID, "--out", "o", "--set", "scene.system=cloth"],
            "--set scene.system: cannot change the system kind from 'springs' to 'cloth'",
        ),
        (
            ["params", SYSID, "--set", "springs.damping=-1"],
            "--set springs.damping: value outside bounds [0, inf]",
        ),
    ],
    ids=lambda v: " ".join(map(str, v[:1] + v[2:])) if isinstance(v, list) else None,
)
def test_bad_flag_or_file_fails_before_any_work(tmp_path, args, expected):
    (tmp_path / "list.json").write_text("[70.0, 0.35]\n")
    (tmp_path / "word.json").write_text('{"springs.stiffness": "stiff"}\n')
    before = sorted(tmp_path.iterdir())
    # PATH without ffmpeg (the command itself runs by the interpreter's absolute path)
    # -q: no Taichi warning (such as another process holding its kernel cache's lock) besides the error
    line = one_error_line(diffsim(*args, "-q", cwd=tmp_path, env={"PATH": str(tmp_path / "no-bin")}))
    assert expected in line, line
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_run_checks_the_task_as_optimize_does(tmp_path):
    write(tmp_path, BASE.replace('fit = ["springs.stiffness", "springs.damping"]', 'fit = ["springz.*"]', 1))
    lines = [one_error_line(diffsim(c, "bad.toml", "--out", "o", cwd=tmp_path)) for c in ("run", "optimize")]
    assert lines[0] == lines[1]
    assert lines[0].startswith("bad.toml: task.fit[0]: no parameter matches 'springz.*'; parameters: "), lines
    assert not (tmp_path / "o").exists()


def test_target_shorter_than_the_rollout_is_refused(tmp_path):
    short = tmp_path / "short"
    assert diffsim("run", SYSID, "--steps", "2", "--out", short, "-q", cwd=tmp_path).returncode == 0
    line = one_error_line(
        diffsim("optimize", SYSID, "--target", short / "trajectory.npz", "--out", "o", cwd=tmp_path)
    )
    assert line == (
        f"{SYSID}: task.loss.target: the target holds frames 0..2, the 400-step rollout is compared up to frame "
        "400: give --steps 2 (sim.steps = 2) or a target that covers the rollout"
    )
    smoke = SYSID.parent / "smoke_sysid.toml"
    line = one_error_line(
        diffsim("optimize", smoke, "--target", short / "trajectory.npz", "--out", "o", cwd=tmp_path)
    )
    assert line == (
        f"{smoke}: task.loss.target: {short / 'trajectory.npz'} was written by a 'springs' scene; this scene "
        "simulates 'smoke'"
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("scene", "sets", "expected"),
    [
        (
            "cloth_sysid",
            ["cloth.resolution=[31623,31623]"],
            "cloth_sysid.toml: cloth.resolution: 301 frames (300 steps, full storage) of 1 copy of a 31623 x 31623 "
            "grid of vertices needs about ",
        ),
        (
            "springs_sysid",
            ["sim.batch=1099511627776"],
            "springs_sysid.toml: sim.batch: 401 frames (400 steps, full "
            "storage) of 1099511627776 copies of 4 particles needs about ",
        ),
        (
            "mpm_sysid",
            ["grid.res=[2048]"],
            "mpm_sysid.toml: bodies: 301 frames (300 steps, full storage) of 1 copy "
            "of about 2053531 particles needs about ",
        ),
        (
            "cloth_sysid",
            ["cloth.mesh=obj", "cloth.obj=/dev/zero"],
            "cloth_sysid.toml: cloth.obj: /dev/zero: not a regular file",
        ),
        (
            "springs_sysid",
            ["sim.steps=1180591620717411303424"],
            "springs_sysid.toml: sim.steps: must be a 64-bit "
            "integer (|value| < 2^63), got 1180591620717411303424",
        ),
        (
            "springs_sysid",
            [f"gravity=[0,{10**400}]"],
            "--set gravity: must be finite, got [0, 10000000... (401 digits)]",
        ),
    ],
    ids=["cloth-31623^2", "batch-2^40", "mpm-box", "obj-dev-zero", "steps-2^70", "float-overflow"],
)
def test_too_large_is_refused_before_allocating(tmp_path, scene, sets, expected):
    args = [a for s in sets for a in ("--set", s)]
    line = one_error_line(diffsim("run", SYSID.parent / f"{scene}.toml", "--out", "o", *args, cwd=tmp_path))
    assert expected in line, line
    assert not (tmp_path / "o").exists()


def test_integer_past_64_bits_in_a_scene_file(tmp_path):
    write(tmp_path, BASE.replace("steps = 400", "steps = 99999999999999999999999", 1))
    assert one_error_line(diffsim("run", "bad.toml", "--out", "o", cwd=tmp_path)) == (
        "bad.toml: sim.steps: must be a 64-bit integer (|value| < 2^63), got 99999999999999999999999"
    )
