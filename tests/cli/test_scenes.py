"""Every scene in scenes/ runs, and optimizes for one iteration, in a short mode."""

from __future__ import annotations

import json

import pytest

from diffsim.scene import load_scene
from tests.cli.conftest import SCENES, diffsim, ok

ALL = sorted(SCENES.glob("*.toml"))


def test_there_are_scenes():
    assert {p.stem for p in ALL} >= {"walker2d", "springs_sysid"}


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
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
