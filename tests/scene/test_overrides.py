"""--set NAME=VALUE overrides: parsing, applying, and the errors for malformed items and bad indices."""

from __future__ import annotations

import copy
import math

import pytest

from diffsim.errors import DiffsimError
from diffsim.scene.overrides import apply_overrides, parse_key_path, parse_set, parse_value
from diffsim.scene.schema import Field, Table, TableArray, validate

SRC = "scenes/walker2d.toml"

SCHEMA = Table(
    {
        "sim": Table(
            {"dt": Field("float", 1e-3, min=0, min_exclusive=True), "gravity": Field("vector", [0, -9.8])}
        ),
        "task": Table({"optimizer": Table({"name": Field("str", "adam"), "lr": Field("float", 0.01)})}),
        "springs": TableArray(Table({"ends": Field("int_list", length=2), "stiffness": Field("float", 1e4)})),
    }
)


def scene() -> dict:
    return {"sim": {"dt": 0.002}, "springs": [{"ends": [0, 1]}, {"ends": [1, 2]}, {"ends": [2, 0]}]}


# ----------------------------------------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize(
    "name, path",
    [
        ("sim.dt", ["sim", "dt"]),
        ("springs[3].stiffness", ["springs", 3, "stiffness"]),
        ("task.optimizer.lr", ["task", "optimizer", "lr"]),
        ("a[1][2]", ["a", 1, 2]),
        ("masses[0]", ["masses", 0]),
    ],
)
def test_parse_key_path(name, path):
    assert parse_key_path(name) == path


@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3),
        ("-3", -3),
        ("2.5", 2.5),
        ("1e-4", 1e-4),
        ("-.5", -0.5),
        ("true", True),
        ("false", False),
        ("1,2,3", [1, 2, 3]),
        ("1.5, -2, 3", [1.5, -2.0, 3.0]),
        ("[0, -9.8]", [0.0, -9.8]),
        ("[]", []),
        ("adam", "adam"),
        ("'adam'", "adam"),
        ('"3"', "3"),
        ("'true'", "true"),
        ("a,b", "a,b"),
        ("meshes/body.obj", "meshes/body.obj"),
        ("", ""),
        ("True", "True"),
    ],
)
def test_parse_value(text, value):
    parsed = parse_value(text)
    assert parsed == value
    assert type(parsed) is type(value)
    if isinstance(value, list):
        assert [type(x) for x in parsed] == [type(x) for x in value]


def test_parse_value_non_finite_is_a_float_rejected_by_validation():
    assert math.isnan(parse_value("nan"))
    data = apply_overrides(scene(), parse_set(["sim.dt=nan"]), SRC)
    with pytest.raises(DiffsimError) as info:
        validate(data, SCHEMA, source=SRC)
    assert str(info.value) == f"{SRC}: sim.dt: must be finite, got nan"


def test_parse_set():
    items = ["springs[1].stiffness=2e4", "sim.gravity=0,-10", " task.optimizer.name = sgd ", "x=a=b"]
    assert parse_set(items) == [
        (["springs", 1, "stiffness"], 2e4),
        (["sim", "gravity"], [0, -10]),
        (["task", "optimizer", "name"], "sgd"),
        (["x"], "a=b"),
    ]


@pytest.mark.parametrize(
    "item, message",
    [
        ("foo", "malformed override 'foo' (expected NAME=VALUE)"),
        ("=3", "malformed override '=3': empty NAME (expected NAME=VALUE)"),
        ("a[x]=1", "malformed override 'a[x]=1': bad index [x] in 'a[x]', expected a non-negative integer"),
        (
            "a[-1]=1",
            "malformed override 'a[-1]=1': bad index [-1] in 'a[-1]', expected a non-negative integer",
        ),
        ("a..b=1", "malformed override 'a..b=1': bad key '' in 'a..b'"),
        ("a b=1", "malformed override 'a b=1': bad key 'a b' in 'a b'"),
        ("a[1=1", "malformed override 'a[1=1': bad key 'a[1' in 'a[1'"),
    ],
)
def test_malformed_set(item, message):
    with pytest.raises(DiffsimError) as info:
        parse_set(["sim.dt=0.1", item])
    assert info.value.where == "--set"
    assert str(info.value).startswith(f"--set: {message}")


def test_parse_set_rejects_a_single_string():
    with pytest.raises(TypeError):
        parse_set("sim.dt=0.1")


# ----------------------------------------------------------------------------------------------------------
# Applying


def test_apply_sets_values_and_does_not_mutate():
    data = scene()
    before = copy.deepcopy(data)
    out = apply_overrides(
        data, parse_set(["springs[2].stiffness=5e3", "sim.dt=0.001", "springs[0].ends=0,2"]), SRC
    )
    assert data == before
    assert out["springs"][2] == {"ends": [2, 0], "stiffness": 5e3}
    assert out["springs"][0]["ends"] == [0, 2]
    assert out["sim"]["dt"] == 0.001
    out["springs"][0]["ends"].append(9)
    assert data == before


def test_apply_creates_intermediate_tables():
    out = apply_overrides(scene(), parse_set(["task.optimizer.lr=0.1"]), SRC)
    assert out["task"] == {"optimizer": {"lr": 0.1}}
    validated = validate(out, SCHEMA, source=SRC)
    assert validated["task"]["optimizer"] == {"name": "adam", "lr": 0.1}
    assert validated["sim"]["gravity"] == [0.0, -9.8]


def test_apply_sets_list_element():
    out = apply_overrides(scene() | {"sim": {"gravity": [0, -9.8]}}, parse_set(["sim.gravity[1]=-1.6"]), SRC)
    assert out["sim"]["gravity"] == [0, -1.6]


def test_each_override_copied():
    value = [1.0, 2.0]
    out = apply_overrides({}, [(["a"], value), (["b"], value)], SRC)
    out["a"].append(3.0)
    assert out["b"] == [1.0, 2.0] and value == [1.0, 2.0]


def test_index_out_of_range_names_key_and_length():
    with pytest.raises(DiffsimError) as info:
        apply_overrides(scene(), parse_set(["springs[5].stiffness=1"]), SRC)
    assert info.value.where == f"{SRC}: springs"
    assert str(info.value) == (
        f"{SRC}: springs: index 5 out of range for 'springs' with 3 entries (--set springs[5].stiffness=1)"
    )


def test_index_into_absent_array():
    with pytest.raises(DiffsimError) as info:
        apply_overrides({}, parse_set(["springs[0].stiffness=1"]), SRC)
    assert str(info.value) == (
        f"{SRC}: springs: index 0 out of range: 'springs' is absent (0 entries) "
        "(--set springs[0].stiffness=1)"
    )


def test_key_into_array_or_value():
    with pytest.raises(DiffsimError) as info:
        apply_overrides(scene(), parse_set(["springs.stiffness=1"]), SRC)
    assert str(info.value) == (
        f"{SRC}: springs: cannot set key 'stiffness': this is an array with 3 entries, not a table "
        "(--set springs.stiffness=1)"
    )
    with pytest.raises(DiffsimError) as info:
        apply_overrides(scene(), parse_set(["sim.dt[0]=1"]), SRC)
    assert (
        str(info.value)
        == f"{SRC}: sim.dt: cannot index [0]: this is the value 0.002, not an array (--set sim.dt[0]=1)"
    )


def test_unknown_key_caught_by_validation_with_suggestion():
    data = apply_overrides(scene(), parse_set(["springs[1].stifness=3"]), SRC)
    with pytest.raises(DiffsimError) as info:
        validate(data, SCHEMA, source=SRC)
    assert str(info.value) == f"{SRC}: springs[1]: unknown key 'stifness' (did you mean 'stiffness'?)"


def test_override_value_checked_by_validation():
    data = apply_overrides(scene(), parse_set(["sim.dt=-1"]), SRC)
    with pytest.raises(DiffsimError) as info:
        validate(data, SCHEMA, source=SRC)
    assert str(info.value) == f"{SRC}: sim.dt: must be > 0, got -1"


def test_int_list_override_stays_integer():
    data = apply_overrides(scene(), parse_set(["springs[0].ends=0,2", "sim.gravity=0,-10"]), SRC)
    out = validate(data, SCHEMA, source=SRC)
    assert out["springs"][0]["ends"] == [0, 2]
    assert out["sim"]["gravity"] == [0.0, -10.0] and all(type(x) is float for x in out["sim"]["gravity"])
