"""Scene schema: validation results and the exact text of every kind of error."""

from __future__ import annotations

import copy
import math

import pytest

from diffsim.errors import DiffsimError
from diffsim.scene.schema import (
    REQUIRED,
    Field,
    Table,
    TableArray,
    describe,
    format_key_path,
    load_toml,
    markdown_reference,
    validate,
)

SRC = "scenes/walker2d.toml"

SCHEMA = Table(
    {
        "sim": Table(
            {
                "dt": Field("float", 1e-3, unit="s", min=0, min_exclusive=True, doc="Time step."),
                "steps": Field("int", 500, min=1, doc="Frames per rollout."),
                "gravity": Field("vector", [0, -9.8], length=2, unit="m/s²"),
                "substeps": Field("int", 1, choices=[1, 2, 4]),
                "debug": Field("bool", False),
            },
            doc="Integrator settings.",
        ),
        "task": Table(
            {
                "optimizer": Table(
                    {
                        "name": Field("str", "adam", choices=["adam", "sgd", "lbfgs"]),
                        "lr": Field("float", 0.01, min=0, max=1),
                    }
                ),
                "target": Field("vector", None, length=2, doc="Goal position (m)."),
            }
        ),
        "masses": Field("list", item=Field("vector", length=2), doc="Rest positions (m)."),
        "fixed": Field("int_list", [], min=0),
        "springs": TableArray(
            Table(
                {
                    "ends": Field("int_list", length=2, min=0),
                    "stiffness": Field("float", 1e4, unit="N/m", min=0, min_exclusive=True),
                    "damping": Field("float", 0.0, min=0),
                }
            ),
            min_len=1,
            doc="Springs between masses.",
        ),
        "controller": Table({"hidden": Field("int", min=1), "seed": Field("int", 0)}),
        "mesh": Field("path", None),
        "extra_info": Field("any", None),
    },
    doc="A mass-spring scene.",
)


def minimal() -> dict:
    return {
        "masses": [[0, 0], [1, 0], [0.5, 1]],
        "springs": [{"ends": [0, 1]}, {"ends": [1, 2], "stiffness": 2e4}, {"ends": [2, 0]}, {"ends": [0, 2]}],
    }


def error_of(data: dict, schema: Table = SCHEMA, **kwargs) -> DiffsimError:
    with pytest.raises(DiffsimError) as info:
        validate(data, schema, source=SRC, **kwargs)
    return info.value


# ----------------------------------------------------------------------------------------------------------
# Results


def test_defaults_filled_recursively():
    out = validate(minimal(), SCHEMA, source=SRC)
    assert out["sim"] == {"dt": 1e-3, "steps": 500, "gravity": [0.0, -9.8], "substeps": 1, "debug": False}
    assert out["task"] == {"optimizer": {"name": "adam", "lr": 0.01}, "target": None}
    assert out["springs"][0] == {"ends": [0, 1], "stiffness": 1e4, "damping": 0.0}
    assert out["springs"][1]["stiffness"] == 2e4
    assert out["fixed"] == []
    assert out["mesh"] is None


def test_optional_table_with_required_key_stays_absent():
    out = validate(minimal(), SCHEMA, source=SRC)
    assert "controller" not in out  # has a required key, so no defaults to fill
    data = minimal() | {"controller": {"hidden": 32}}
    assert validate(data, SCHEMA, source=SRC)["controller"] == {"hidden": 32, "seed": 0}


def test_ints_widened_to_float():
    data = minimal()
    data["sim"] = {"dt": 1, "gravity": [0, -10]}
    out = validate(data, SCHEMA, source=SRC)
    assert type(out["sim"]["dt"]) is float
    assert all(type(x) is float for x in out["sim"]["gravity"])
    assert all(type(x) is float for m in out["masses"] for x in m)
    assert type(out["sim"]["steps"]) is int


def test_input_not_mutated():
    data = minimal()
    data["extra_info"] = {"note": ["a", "b"]}
    before = copy.deepcopy(data)
    out = validate(data, SCHEMA, source=SRC)
    assert data == before
    assert "sim" not in data
    out["extra_info"]["note"].append("c")
    out["masses"][0][0] = 99.0
    assert data == before


def test_any_field_free_form():
    data = minimal() | {"extra_info": {"anything": [1, "x", {"y": True}]}}
    assert validate(data, SCHEMA, source=SRC)["extra_info"] == {"anything": [1, "x", {"y": True}]}


def test_extra_table_keeps_unknown_keys():
    schema = Table({"a": Field("int", 1)}, extra=True)
    assert validate({"b": 2}, schema) == {"a": 1, "b": 2}


# ----------------------------------------------------------------------------------------------------------
# Errors: each names the file, the key path and the value


def test_unknown_key_suggests_closest():
    data = minimal()
    data["springs"][3]["stifness"] = 5.0
    e = error_of(data)
    assert str(e) == f"{SRC}: springs[3]: unknown key 'stifness' (did you mean 'stiffness'?)"
    assert e.where == f"{SRC}: springs[3]"


def test_unknown_top_level_key_lists_valid_keys():
    e = error_of(minimal() | {"zzz": 1})
    assert str(e).startswith(f"{SRC}: unknown key 'zzz' (valid keys: sim, task, masses,")


def test_unknown_nested_key():
    e = error_of(minimal() | {"task": {"optimiser": {"lr": 0.1}}})
    assert str(e) == f"{SRC}: task: unknown key 'optimiser' (did you mean 'optimizer'?)"


def test_out_of_range_in_array_of_tables():
    data = minimal()
    data["springs"][3]["stiffness"] = -5
    assert str(error_of(data)) == f"{SRC}: springs[3].stiffness: must be > 0, got -5"


@pytest.mark.parametrize(
    "sim, message",
    [
        ({"dt": 0}, "sim.dt: must be > 0, got 0"),
        ({"dt": "fast"}, "sim.dt: must be a number, got 'fast'"),
        ({"dt": True}, "sim.dt: must be a number, got true"),
        ({"steps": 2.5}, "sim.steps: must be an integer, got 2.5"),
        ({"steps": 3.0}, "sim.steps: must be an integer, got 3.0"),
        ({"steps": 0}, "sim.steps: must be >= 1, got 0"),
        ({"steps": False}, "sim.steps: must be an integer, got false"),
        ({"debug": 1}, "sim.debug: must be true or false, got 1"),
        ({"substeps": 3}, "sim.substeps: must be one of 1, 2, 4, got 3"),
        ({"gravity": [0, -9.8, 0]}, "sim.gravity: must be a list of 2 numbers, got [0, -9.8, 0]"),
        ({"gravity": -9.8}, "sim.gravity: must be a list of numbers, got -9.8"),
        ({"gravity": [0, "down"]}, "sim.gravity[1]: must be a number, got 'down'"),
    ],
)
def test_wrong_type_or_range(sim, message):
    assert str(error_of(minimal() | {"sim": sim})) == f"{SRC}: {message}"


def test_range_both_bounds():
    e = error_of(minimal() | {"task": {"optimizer": {"lr": 1.5}}})
    assert str(e) == f"{SRC}: task.optimizer.lr: must be in [0, 1], got 1.5"


def test_exclusive_bounds_text():
    schema = Table({"p": Field("float", min=0, max=1, min_exclusive=True, max_exclusive=True)})
    assert str(error_of({"p": 1.0}, schema)) == f"{SRC}: p: must be in (0, 1), got 1.0"
    schema = Table({"p": Field("float", max=1, max_exclusive=True)})
    assert str(error_of({"p": 2}, schema)) == f"{SRC}: p: must be < 1, got 2"


def test_choices_with_suggestion():
    e = error_of(minimal() | {"task": {"optimizer": {"name": "adm"}}})
    assert str(e) == (
        f"{SRC}: task.optimizer.name: must be one of 'adam', 'sgd', 'lbfgs', got 'adm' (did you mean 'adam'?)"
    )


def test_missing_required_key():
    data = minimal()
    del data["springs"][2]["ends"]
    assert str(error_of(data)) == f"{SRC}: springs[2].ends: missing required key"


def test_missing_required_key_in_optional_table_given():
    e = error_of(minimal() | {"controller": {"seed": 3}})
    assert str(e) == f"{SRC}: controller.hidden: missing required key"


def test_missing_required_table():
    schema = Table({"sim": Table({"dt": Field("float", 0.01)}, required=True)})
    assert str(error_of({}, schema)) == f"{SRC}: sim: missing required key (table [sim])"


def test_missing_table_array_with_min_len():
    data = minimal()
    del data["springs"]
    assert str(error_of(data)) == f"{SRC}: springs: missing required key (at least 1 [[springs]] entry)"


def test_table_array_too_short_and_wrong_type():
    assert str(error_of(minimal() | {"springs": []})) == f"{SRC}: springs: must have at least 1 entry, got 0"
    e = error_of(minimal() | {"springs": 5})
    assert str(e) == f"{SRC}: springs: must be an array of tables ([[springs]]), got 5"
    e = error_of(minimal() | {"springs": [{"ends": [0, 1]}, 7]})
    assert str(e) == f"{SRC}: springs[1]: must be a table, got 7"


def test_table_given_a_value():
    assert str(error_of(minimal() | {"sim": 0.01})) == f"{SRC}: sim: must be a table, got 0.01"


def test_list_of_vectors_indexes_items():
    data = minimal()
    data["masses"][2] = [0.5]
    assert str(error_of(data)) == f"{SRC}: masses[2]: must be a list of 2 numbers, got [0.5]"


def test_int_list_element_errors():
    data = minimal()
    data["springs"][1]["ends"] = [1, -2]
    assert str(error_of(data)) == f"{SRC}: springs[1].ends[1]: must be >= 0, got -2"
    data["springs"][1]["ends"] = [1, 2.0]
    assert str(error_of(data)) == f"{SRC}: springs[1].ends[1]: must be an integer, got 2.0"


@pytest.mark.parametrize("bad, shown", [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")])
def test_non_finite_rejected(bad, shown):
    assert str(error_of(minimal() | {"sim": {"dt": bad}})) == f"{SRC}: sim.dt: must be finite, got {shown}"
    e = error_of(minimal() | {"sim": {"gravity": [0, bad]}})
    assert str(e) == f"{SRC}: sim.gravity[1]: must be finite, got {shown}"


def test_nan_rejected_from_toml(tmp_path):
    scene = tmp_path / "scene.toml"
    scene.write_text("masses = [[0, 0]]\n[sim]\ndt = nan\n[[springs]]\nends = [0, 0]\n")
    with pytest.raises(DiffsimError) as info:
        validate(load_toml(scene), SCHEMA, source=str(scene))
    assert str(info.value) == f"{scene}: sim.dt: must be finite, got nan"


# ----------------------------------------------------------------------------------------------------------
# Paths


def test_path_resolved_against_scene_folder(tmp_path):
    (tmp_path / "meshes").mkdir()
    (tmp_path / "meshes" / "body.obj").write_text("v 0 0 0\n")
    source = str(tmp_path / "scene.toml")
    out = validate(minimal() | {"mesh": "meshes/body.obj"}, SCHEMA, source=source)
    assert out["mesh"] == str(tmp_path / "meshes" / "body.obj")


def test_path_base_dir_argument(tmp_path):
    (tmp_path / "a.obj").write_text("")
    out = validate(minimal() | {"mesh": "a.obj"}, SCHEMA, source="<scene>", base_dir=str(tmp_path))
    assert out["mesh"] == str(tmp_path / "a.obj")


def test_missing_path_file(tmp_path):
    source = str(tmp_path / "scene.toml")
    with pytest.raises(DiffsimError) as info:
        validate(minimal() | {"mesh": "meshes/nope.obj"}, SCHEMA, source=source)
    resolved = tmp_path / "meshes" / "nope.obj"
    assert str(info.value) == f"{source}: mesh: file not found: {resolved}"


def test_path_must_be_string():
    assert (
        str(error_of(minimal() | {"mesh": 3}))
        == f"{SRC}: mesh: must be a file path (a non-empty string), got 3"
    )


# ----------------------------------------------------------------------------------------------------------
# Reading TOML


def test_load_toml_reads_arrays_of_tables(tmp_path):
    scene = tmp_path / "walker.toml"
    scene.write_text(
        "masses = [[0, 0], [1, 0]]\n\n[sim]\ndt = 0.002\n\n[[springs]]\nends = [0, 1]\nstiffness = 3e4\n"
    )
    out = validate(load_toml(scene), SCHEMA, source=str(scene))
    assert out["sim"]["dt"] == 0.002
    assert out["springs"] == [{"ends": [0, 1], "stiffness": 3e4, "damping": 0.0}]


def test_load_toml_missing_file(tmp_path):
    path = str(tmp_path / "nope.toml")
    with pytest.raises(DiffsimError) as info:
        load_toml(path)
    assert str(info.value) == f"{path}: file not found"
    assert info.value.where == path


def test_load_toml_syntax_error_names_file_line_column(tmp_path):
    scene = tmp_path / "broken.toml"
    scene.write_text("[sim]\ndt = 0.01\nsteps = = 3\n")
    with pytest.raises(DiffsimError) as info:
        load_toml(scene)
    message = str(info.value)
    assert message.startswith(f"{scene}: invalid TOML at line 3, column ")
    assert info.value.where == str(scene)


def test_load_toml_duplicate_key(tmp_path):
    scene = tmp_path / "dup.toml"
    scene.write_text("a = 1\na = 2\n")
    with pytest.raises(DiffsimError, match=r"dup\.toml: invalid TOML at line 2, column"):
        load_toml(scene)


# ----------------------------------------------------------------------------------------------------------
# Schema definitions and docs


def test_bad_schema_definitions_raise_at_import_time():
    with pytest.raises(ValueError, match="type"):
        Field("double")
    with pytest.raises(ValueError, match="item"):
        Field("list")
    with pytest.raises(ValueError, match="min/max"):
        Field("str", min=0)
    with pytest.raises(ValueError, match="default"):
        Field("float", -1.0, min=0)
    with pytest.raises(TypeError):
        Table({"a": 1})


def test_field_default_normalized():
    assert Field("vector", (0, 1)).default == [0.0, 1.0]
    assert Field("float", 1).default == 1.0
    assert Field("int").default is REQUIRED


def test_describe_lists_every_key():
    rows = {r["key"]: r for r in describe(SCHEMA)}
    assert rows["sim.dt"] == {
        "key": "sim.dt",
        "type": "float",
        "default": "0.001",
        "unit": "s",
        "doc": "Time step.",
        "range": "> 0",
        "required": False,
    }
    assert rows["springs"]["type"] == "array of tables"
    assert rows["springs[].stiffness"]["unit"] == "N/m"
    assert rows["springs[].ends"]["default"] == "required"
    assert rows["springs[].ends"]["type"] == "int list[2]"
    assert rows["task.optimizer.name"]["range"] == "one of 'adam', 'sgd', 'lbfgs'"
    assert rows["task.optimizer.lr"]["range"] == "[0, 1]"
    assert rows["masses"]["type"] == "list of vector[2]"
    assert rows["task.target"]["default"] == "unset"
    assert [r["key"] for r in describe(Table({"a": Field("int", 1)}), prefix="x")] == ["x.a"]


def test_markdown_reference_has_a_table_per_section():
    md = markdown_reference(SCHEMA, "Mass-spring scenes")
    assert md.startswith("# Mass-spring scenes\n\nA mass-spring scene.\n")
    assert "## `[sim]`" in md
    assert "## `[task.optimizer]`" in md
    assert "## `[[springs]]`" in md
    assert "Springs between masses. At least 1 entry." in md
    assert "| `dt` | float | `0.001` | s | `> 0` | Time step. |" in md
    assert "| `ends` | int list[2] | required |  | `>= 0` |  |" in md


def test_format_key_path():
    assert format_key_path(["springs", 3, "stiffness"]) == "springs[3].stiffness"
    assert format_key_path(["a", 1, 2]) == "a[1][2]"
    assert format_key_path(["odd key"]) == '"odd key"'
