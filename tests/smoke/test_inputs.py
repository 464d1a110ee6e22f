"""Bad smoke input gets a clear DiffsimError naming the file, key and value (before any large allocation)."""

import numpy as np
import pytest

from diffsim import DiffsimError
from diffsim.scene import load_scene
from diffsim.systems.smoke import SmokeModel, SmokeSystem
from tests.conftest import use


@pytest.fixture(scope="module", autouse=True)
def f32():
    use("cpu", "f32")


def build(overrides, scene="smoke_target2d"):
    sc = load_scene(scene, overrides)
    sc.init_backend()
    return sc.build()


@pytest.mark.parametrize(
    "res,msg",
    [
        ("[0, 128]", ">= 1 cell per axis, got 0"),
        ("[128, -4]", ">= 1 cell per axis, got -4"),
        ("[128]", "2 or 3 entries"),
    ],
)
def test_zero_negative_or_malformed_grid_sizes(res, msg):
    with pytest.raises(DiffsimError) as e:
        build([f"grid.resolution={res}"])
    assert "smoke_target2d.toml" in str(e.value) and "grid.resolution" in str(e.value), str(e.value)
    assert msg in str(e.value) or "must be >= 1" in str(e.value), str(e.value)


def test_a_grid_too_large_for_memory_is_refused_with_the_estimate():
    # beyond the supported cell count: refused with the estimate, nothing allocated
    with pytest.raises(DiffsimError) as e:
        build(["grid.resolution=[4096, 4096, 4096]"])
    s = str(e.value)
    assert "grid.resolution" in s and "GiB" in s and "cells" in s, s
    # within the cell count, but 100 frames of it do not fit this machine: refused with the estimate
    with pytest.raises(DiffsimError) as e:
        build(["grid.resolution=[512, 512, 512]"])
    s = str(e.value)
    assert "grid.resolution" in s and "GiB" in s and "available" in s, s


def test_obstacles_covering_the_whole_domain():
    with pytest.raises(DiffsimError) as e:
        m = SmokeModel((16, 16), source="box.toml")
        m.add_obstacle(lo=(-1.0, -1.0), hi=(2.0, 2.0))
        m.finalize()
    assert "box.toml: obstacles" in str(e.value) and "whole domain" in str(e.value), str(e.value)


def test_obstacles_covering_the_whole_domain_in_a_scene(tmp_path):
    text = open(load_scene("smoke_sysid").source).read()
    text += "\n[[obstacles]]\nlo = [-1.0, -1.0]\nhi = [2.0, 2.0]\n"
    path = tmp_path / "covered.toml"
    path.write_text(text)
    with pytest.raises(DiffsimError) as e:
        sc = load_scene(path)
        sc.init_backend()
        sc.build_system()
    s = str(e.value)
    assert "covered.toml" in s and "obstacles" in s and "no fluid left" in s, s


def test_a_target_image_of_the_wrong_shape(tmp_path):
    bad = tmp_path / "target64.npy"
    np.save(bad, np.zeros((64, 64)))
    with pytest.raises(DiffsimError) as e:
        build([f"task.loss.target={bad}"])
    s = str(e.value)
    assert "task.loss.target" in s and "(64, 64)" in s and "(128, 128)" in s, s


def test_unstable_viscosity_and_bad_names():
    m = SmokeModel((8, 8), source="m.toml")
    with pytest.raises(DiffsimError) as e:
        SmokeSystem(m, dt=0.1, viscosity=1.0)
    assert "stability limit" in str(e.value) and "viscosity" in str(e.value)
    with pytest.raises(DiffsimError) as e:
        SmokeSystem(m, dt=0.1, buoyancy={"temperature": 1.0})
    assert "temperature" in str(e.value) and "density" in str(e.value)
    with pytest.raises(DiffsimError) as e:
        SmokeModel((8, 8), boundary="wrap")
    assert "wrap" in str(e.value)
