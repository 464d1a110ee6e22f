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
            "bad.toml: task.optimizer.name: must be one of 'adam', 'sgd', 'lbfgs', "
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
