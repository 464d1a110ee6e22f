"""Every scene in scenes/ runs, and optimizes for one iteration, in a short mode.

Each run is a subprocess that compiles its system's kernels (tens of seconds for the bigger systems on 2 cores):
`make test` runs the first scene (by name) of each system kind, `make test-slow` the others.
"""

from __future__ import annotations

import json

import pytest

from diffsim.scene import load_scene
from diffsim.scene.schema import tomllib
from tests.cli.conftest import SCENES, diffsim, ok

ALL = sorted(SCENES.glob("*.toml"))


def _params():
    seen, params = set(), []
    for path in ALL:
        kind = tomllib.loads(path.read_text())["scene"]["system"]
        marks = [pytest.mark.slow] if kind in seen else []
        seen.add(kind)
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def test_there_are_scenes():
    assert {p.stem for p in ALL} >= {"walker2d", "springs_sysid"}


@pytest.mark.parametrize("path", _params())
def test_scene_runs_in_short_mode(tmp_path, path):
    scene = load_scene(path)
    assert scene.description, "every shipped scene says what it shows"
    if scene.has_task:
        ok(
            diffsim(
                "optimize",
                path,
                "--out",
                "o",
                "--steps",
                "12",
                "--iters",
                "1",
                "--no-render",
                "--quiet",
                cwd=tmp_path,
            )
        )
        result = json.loads((tmp_path / "o" / "result.json").read_text())
        assert result["iterations"] == 1 and result["best_loss"] is not None
    else:
        ok(diffsim("run", path, "--out", "o", "--steps", "12", "--quiet", cwd=tmp_path))
