"""Sweep designs and the results table: no Taichi, no Ray."""

import csv
import io
import math

import numpy as np
import pytest

from diffsim.errors import DiffsimError
from diffsim.scale.design import grid_design, parse_grid, parse_range, random_design
from diffsim.scale.table import SweepTable
from diffsim.scale.trial import start_design


def test_grid_is_the_product_with_the_last_axis_fastest():
    a = parse_grid("ground.friction=0.2:0.6:3")
    b = parse_grid("bodies.mass=1:2:2")
    assert a == ("ground.friction", [0.2, 0.4, 0.6])
    design = grid_design(dict([a, b]))
    assert len(design) == 6
    assert design[:2] == [
        {"ground.friction": 0.2, "bodies.mass": 1.0},
        {"ground.friction": 0.2, "bodies.mass": 2.0},
    ]
    assert parse_grid("x=3:3:1") == ("x", [3.0])


@pytest.mark.parametrize(
    "spec, reason",
    [
        ("friction", "expected NAME=LO:HI"),
        ("=1:2:3", "empty NAME"),
        ("x=1:2", "expected NAME=LO:HI:N"),
        ("x=1:a:3", "'a' is not a number"),
        ("x=1:2:0", "N must be >= 1"),
        ("x=2:1:3", "LO must be below HI"),
        ("x=1:inf:3", "not finite"),
    ],
)
def test_bad_grid_names_the_flag_and_value(spec, reason):
    with pytest.raises(DiffsimError, match=reason) as err:
        parse_grid(spec)
    assert err.value.where == "--grid"


def test_range_needs_lo_below_hi():
    assert parse_range("x=-1:2") == ("x", (-1.0, 2.0))
    with pytest.raises(DiffsimError, match="LO must be below HI"):
        parse_range("x=2:2")


@pytest.mark.parametrize("method", ["sobol", "lhs", "uniform"])
def test_random_designs_lie_in_their_box_and_repeat_with_the_seed(method):
    box = {"a": (0.5, 1.5), "b": (-3.0, -1.0)}
    points = random_design(box, 16, method, seed=4)
    arr = np.array([[p["a"], p["b"]] for p in points])
    assert arr.shape == (16, 2)
    assert np.all(arr[:, 0] >= 0.5) and np.all(arr[:, 0] <= 1.5)
    assert np.all(arr[:, 1] >= -3.0) and np.all(arr[:, 1] <= -1.0)
    assert points == random_design(box, 16, method, seed=4)
    assert points != random_design(box, 16, method, seed=5)


def test_latin_hypercube_puts_one_point_in_each_stratum():
    points = random_design({"a": (0.0, 1.0)}, 10, "lhs", seed=0)
    strata = sorted(int(p["a"] * 10) for p in points)
    assert strata == list(range(10))


def test_starts_begin_at_the_scene_values_and_draw_each_element():
    ranges = {
        "mass": {"value": [1.3], "low": [0.65], "high": [2.6]},
        "pos": {"value": [[0.25, 0.3]], "low": [[0.0, 0.0]], "high": [[1.0, 0.5]]},
    }
    design = start_design(ranges, 5, "sobol", seed=0)
    assert design[0] == {"mass": [1.3], "pos": [[0.25, 0.3]]}
    pos = np.array([d["pos"] for d in design[1:]])
    assert pos.shape == (4, 1, 2)
    assert np.all(pos[..., 1] <= 0.5) and len({tuple(p.ravel()) for p in pos}) == 4


def test_table_csv_keeps_every_bit_and_best_skips_errors():
    rows = [
        {"index": 1, "values.x": 0.1, "status": "ok", "best_loss": 0.1 + 0.2, "final_loss": 1 / 3},
        {
            "index": 0,
            "values.x": [1.0, 2.0],
            "status": "error",
            "best_loss": math.nan,
            "final_loss": math.nan,
        },
        {"index": 2, "values.x": 0.3, "status": "ok", "best_loss": 0.5, "final_loss": 0.5},
    ]
    table = SweepTable(rows, ["x"])
    assert table["index"] == [0, 1, 2]
    assert table.best()["index"] == 1
    parsed = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert float(parsed[1]["best_loss"]) == 0.1 + 0.2
    assert float(parsed[1]["final_loss"]) == 1 / 3
    assert parsed[0]["values.x"] == "[1.0, 2.0]"
    assert "best loss 0.3" in repr(table)
