"""Every scene in scenes/ runs, and optimizes for one iteration, in a short mode.

Each run is a subprocess that compiles its system's kernels (tens of seconds for the bigger systems on 2 cores):
`make test` runs one scene of each system kind (the first by name, or the one in FAST), `make test-slow` the
others.
"""

from __future__ import annotations

import json

import pytest

from diffsim.scene import load_scene
from diffsim.scene.schema import tomllib
from tests.cli.conftest import SCENES, diffsim, ok

ALL = sorted(SCENES.glob("*.toml"))


#: the scene `make test` runs for a system kind, where the first by name is slow to compile (3D smoke: ~1 min)
FAST = {"smoke": "smoke_sysid"}


def _params():
    kinds = {path.stem: tomllib.loads(path.read_text())["scene"]["system"] for path in ALL}
    fast = {}
    for name, kind in kinds.items():
        fast.setdefault(kind, FAST.get(kind, name))
    return [
        pytest.param(
            path, id=path.stem, marks=[] if fast[kinds[path.stem]] == path.stem else [pytest.mark.slow]
        )
        for path in ALL
    ]


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
