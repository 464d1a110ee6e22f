"""Scene files built into simulations: overrides, the task, the TOML writer, the registry and the generated docs."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import diffsim
from diffsim.errors import DiffsimError
from diffsim.scene import (
    Drawing,
    Scene,
    load_scene,
    reference_markdown,
    register_system,
    scene_schema,
    system_kinds,
)
from diffsim.scene.registry import unregister_system
from diffsim.scene.schema import Field, Table
from diffsim.scene.task import flatten_names
from diffsim.scene.toml_writer import dumps
from diffsim.scene.trajectory import load_trajectory, rollout, save_trajectory
from tests.conftest import use

ROOT = Path(__file__).resolve().parents[2]
SCENES = sorted((ROOT / "scenes").glob("*.toml"))
SYSID = ROOT / "scenes" / "springs_sysid.toml"

SMALL = {
    "scene": {"system": "springs"},
    "sim": {"dt": 1e-3, "steps": 20},
    "ground": {"enabled": False},
    "particles": [{"position": [0.0, 1.0], "pinned": True}, {"position": [0.1, 1.0], "mass": 0.1}],
    "springs": [{"a": 0, "b": 1, "stiffness": 100.0, "damping": 0.1}],
}


def small(**tables) -> dict:
    data = {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in SMALL.items()}
    data.update(tables)
    return data


def error(data: dict, *overrides, **kw) -> str:
    with pytest.raises(DiffsimError) as info:
        Scene.from_dict(data, "s.toml", list(overrides), **kw)
    return str(info.value)


def built_error(data: dict, *overrides, grads: str = "all") -> str:
    use("cpu", "f64")
    scene = Scene.from_dict(data, "s.toml", list(overrides))
    with pytest.raises(DiffsimError) as info:
        scene.build(grads=grads)
    return str(info.value)


# ----------------------------------------------------------------------------------------------------------
# Docs and writer


def test_committed_reference_matches_the_schemas():
    """docs/scenes.md is generated; regenerate with `python -m diffsim.scene.reference > docs/scenes.md`."""
    assert (ROOT / "docs" / "scenes.md").read_text() == reference_markdown()


def test_scene_examples_in_the_docs_are_valid():
    checked = 0
    for page in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        for block in [b.split("```", 1)[0] for b in page.read_text().split("```toml\n")[1:]]:
            data = tomllib.loads(block)
            if "scene" in data:
                Scene.from_dict(data, str(page))
                checked += 1
    assert checked >= 2


def test_toml_writer_round_trips():
    data = {
        "top": 1,
        "float": 0.1,
        "big": 1e300,
        "inf": math.inf,
        "s": 'quote " back \\ newline \n tab \t del \x7f é',
        "flag": False,
        "vec": [0.0, -9.81],
        "rows": [[1, 2], [3, 4]],
        "empty": [],
        "dotted": {"springs.stiffness": 3.0, "a b": "x"},
        "table": {"x": 1, "sub": {"y": [1.5]}},
        "arr": [{"a": 0, "nested": {"b": 1}}, {"a": 1}],
        "skipped": None,
    }
    back = tomllib.loads(dumps(data, header="two\nlines"))
    expected = {k: v for k, v in data.items() if v is not None}
    assert back == expected


def test_resolved_scene_loads_back_the_same(tmp_path):
    for path in SCENES:
        scene = load_scene(path)
        out = tmp_path / path.name
        scene.write(out)
        again = load_scene(out)
        assert again.data == scene.data, path.name


def test_flatten_names():
    assert flatten_names({"springs": {"stiffness": 1, "damping": [2]}, "gravity": [0, -9]}) == {
        "springs.stiffness": 1,
        "springs.damping": [2],
        "gravity": [0, -9],
    }


# ----------------------------------------------------------------------------------------------------------
# Loading and overrides


def test_bare_name_finds_a_shipped_scene():
    assert load_scene("walker2d").source.endswith("scenes/walker2d.toml")


def test_overrides_split_into_keys_and_parameters():
    scene = Scene.from_dict(
        small(),
        "s.toml",
        [
            "sim.steps=7",
            "springs[0].damping=0.2",
            "springs.stiffness=80",
            "gravity=0,-5",
            "ground.friction=0.5",
        ],
    )
    assert scene.data["sim"]["steps"] == 7
    assert scene.data["springs"][0]["damping"] == 0.2
    assert scene.data["ground"]["friction"] == 0.5  # a scene key, although also a parameter name
    assert scene.data["params"] == {"springs.stiffness": 80, "gravity": [0, -5]}


def test_bracketed_word_lists_in_set():
    scene = Scene.from_dict(
        small(task={"loss": {"kind": "com_displacement"}}),
        "s.toml",
        ["task.fit=[springs.stiffness, 'gravity']", "sim.per_batch=[gravity]"],
    )
    assert scene.data["task"]["fit"] == ["springs.stiffness", "gravity"]
    assert scene.data["sim"]["per_batch"] == ["gravity"]


def test_dotted_and_quoted_parameter_keys_are_the_same():
    a = Scene.from_dict(small(params={"springs": {"stiffness": 80.0}}), "s.toml")
    b = Scene.from_dict(small(params={"springs.stiffness": 80.0}), "s.toml")
    assert a.data["params"] == b.data["params"] == {"springs.stiffness": 80.0}


def test_misspelt_key_in_a_plain_table_is_reported_as_a_key():
    assert error(small(), "sim.stepz=3") == "s.toml: sim: unknown key 'stepz' (did you mean 'steps'?)"


def test_command_line_shortcuts_become_overrides(tmp_path):
    target = tmp_path / "t.npy"
    np.save(target, np.zeros((21, 2, 2)))
    scene = Scene.from_dict(
        small(),
        "s.toml",
        steps=5,
        target=str(target),
        fit=["springs.*"],
        optimizer="sgd",
        lr=0.5,
        iters=3,
        checkpoint_every=2,
    )
    task = scene.data["task"]
    assert scene.data["sim"]["steps"] == 5 and scene.data["sim"]["storage"] == "checkpointed"
    assert task["loss"]["kind"] == "trajectory" and task["loss"]["target"] == str(target)
    assert task["fit"] == ["springs.*"] and task["iters"] == 3
    assert task["optimizer"] == {"name": "sgd", "lr": 0.5, "momentum": 0.0, "clip_norm": None}


def test_variants_report_keys_of_another_kind():
    assert error(small(controller={"kind": "periodic", "hidden": [8]})) == (
        "s.toml: controller: unknown key 'hidden' for kind = 'periodic' (it belongs to kind = 'mlp')"
    )
    assert "did you mean 'periodic'" in error(small(controller={"kind": "periodc"}))


def test_missing_scene_table_and_unknown_system():
    assert error({"sim": {"dt": 1.0, "steps": 1}}) == "s.toml: scene: missing required key (table [scene])"
    assert error({"scene": {"system": "plasma"}}).startswith("s.toml: scene.system: must be one of 'springs'")


def test_missing_target_file_names_the_key(tmp_path):
    data = small(task={"fit": ["springs.stiffness"], "loss": {"kind": "trajectory", "target": "nope.npz"}})
    assert error(data).startswith("s.toml: task.loss.target: file not found: ")


# ----------------------------------------------------------------------------------------------------------
# Building


def test_build_sysid_scene_generates_its_target():
    use("cpu", "f64")
    scene = load_scene(SYSID, ["sim.steps=40"])
    system, sim, task = scene.build()
    assert task.fit == ["springs.stiffness", "springs.damping"]
    assert task.target.shape == (40, 4, 2)
    assert system.params["springs.stiffness"].numpy() == pytest.approx(70.0)  # the start, not the truth
    assert system.params["springs.damping"].transform == "log"
    assert sim.forward() > 0
    sim.backward()
    assert system.params["springs.stiffness"].grad().sum() < 0  # too soft: stiffer springs lower the loss


def test_task_grads_give_gradients_to_the_fitted_parameters_only():
    """build(grads="task"), as `diffsim optimize` builds: the task's fitted parameters have gradients, equal to
    those of the default build (every parameter); the others have none."""
    use("cpu", "f64")
    _, sim_all, task = load_scene(SYSID, ["sim.steps=40"]).build()
    system, sim, task2 = load_scene(SYSID, ["sim.steps=40"]).build(grads="task")
    assert [p.name for p in system.params.with_grad()] == task2.fit == task.fit
    assert len(system.params) > len(task.fit)
    _, want = sim_all.value_and_grad()
    _, got = sim.value_and_grad()
    assert sorted(got) == sorted(task.fit)
    for name in task.fit:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=0, err_msg=name)
    other = next(p for p in system.params if p.name not in task.fit)
    with pytest.raises(DiffsimError, match="built without a gradient"):
        other.grad()
    with pytest.raises(DiffsimError, match="grads: must be 'all' or 'task'"):
        load_scene(SYSID, ["sim.steps=40"]).build(grads="fitted")


def test_generated_target_equals_a_rollout_with_the_true_values():
    use("cpu", "f64")
    truth = load_scene(SYSID, ["sim.steps=30", "springs.stiffness=100", "springs.damping=0.5"])
    system, sim, _ = truth.build(task=False)
    sim.forward()
    x = sim.trajectory(["x"])["x"][:, 0]
    _, _, task = load_scene(SYSID, ["sim.steps=30"]).build()
    np.testing.assert_allclose(task.target, x[1:], rtol=0, atol=1e-12)


def test_target_file_longer_than_the_rollout_is_cut(tmp_path):
    use("cpu", "f64")
    scene = Scene.from_dict(small(), "s.toml")
    system, sim, _ = scene.build(task=False)
    sim.forward()
    path = save_trajectory(
        tmp_path / "t.npz", rollout(sim), scene.drawing(system), dt=system.dt, batch=1, system="springs"
    )
    data = load_trajectory(path)
    assert data["x"].shape == (21, 2, 2) and data["meta"]["steps"] == 20
    short = Scene.from_dict(small(), "s.toml", steps=10, target=str(path), fit=["springs.stiffness"])
    _, sim2, task = short.build()
    assert list(task.target_frames) == list(range(1, 11))
    assert sim2.forward() == pytest.approx(0.0, abs=1e-20)


def test_target_with_other_dt_is_refused(tmp_path):
    use("cpu", "f64")
    scene = Scene.from_dict(small(), "s.toml")
    system, sim, _ = scene.build(task=False)
    sim.forward()
    path = save_trajectory(
        tmp_path / "t.npz", rollout(sim), scene.drawing(system), dt=system.dt, batch=1, system="springs"
    )
    message = built_error(
        small(),
        "sim.dt=0.002",
        f"task.loss.target={path}",
        "task.loss.kind=trajectory",
        "task.fit=[springs.stiffness]",
    )
    assert (
        "task.loss.target: the target was recorded with dt = 0.001 s, the scene has dt = 0.002 s" in message
    )


def test_final_position_inline_target_and_points():
    use("cpu", "f64")
    data = small(
        task={
            "fit": ["initial.velocity"],
            "loss": {"kind": "final_position", "points": [1], "target": [[0.2, 1.0]]},
        }
    )
    _, sim, task = Scene.from_dict(data, "s.toml").build()
    assert task.target.shape == (1, 1, 2)
    assert sim.forward() > 0


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ({"fit": ["springz.*"]}, "s.toml: task.fit[0]: no parameter matches 'springz.*'"),
        (
            {"fit": ["gravity"], "bounds": {"gravity": [1.0]}},
            's.toml: task.bounds."gravity": must be [lo, hi]',
        ),
        (
            {"fit": ["gravity"], "bounds": {"springs.stiffness": [200.0, 300.0]}},
            's.toml: task.bounds."springs.stiffness": the parameter\'s value (min 100, max 100) is outside',
        ),
        (
            {"fit": ["gravity"], "transforms": {"gravity": "exp"}},
            's.toml: task.transforms."gravity": must be one',
        ),
        ({"fit": ["gravity"], "transforms": {"gravity": "log"}}, 's.toml: task.transforms."gravity": a log'),
    ],
)
@pytest.mark.parametrize("grads", ["all", "task"])
def test_task_errors_name_the_key(task, expected, grads):
    task = {"loss": {"kind": "com_displacement"}, **task}
    assert built_error(small(task=task), grads=grads).startswith(expected)


def test_trajectory_target_of_wrong_size():
    data = small(task={"fit": ["gravity"], "loss": {"kind": "trajectory", "target": [[[0.0, 0.0]] * 3] * 5}})
    assert built_error(data) == "s.toml: task.loss.target: the target has 3 points per frame, expected 2"


def test_unknown_parameter_in_params_and_set():
    assert built_error(small(params={"springs.stifness": 1.0})) == (
        "s.toml: params.\"springs.stifness\": no parameter named 'springs.stifness' (did you mean "
        "'springs.stiffness'?)"
    )
    assert built_error(small(), "springs.stiffness=1,2").startswith(
        "--set springs.stiffness: value of shape (2,) does not fit"
    )


def test_body_errors():
    assert error(small(body={"preset": "walker3d"})).startswith("s.toml: body.preset: must be one of")
    assert built_error(small(body={"preset": "walker2d"})).startswith(
        "s.toml: body.preset: give either a preset ('walker2d') or [[particles]]"
    )
    assert built_error(small(body={"mass": 1.0})).startswith(
        "s.toml: body.mass: applies to a preset body only"
    )
    data = small()
    data["particles"] = [{"position": [0.0, 0.0]}, {"position": [1.0, 0.0, 0.0]}]
    assert built_error(data) == (
        "s.toml: particles[1].position: must have 2 components like particles[0].position, got 3"
    )
    data = small()
    data["springs"] = [{"a": 0, "b": 5, "stiffness": 1.0}]
    assert built_error(data).startswith("s.toml: springs[0].b: names particle 5")
    assert built_error(small(), "sim.gravity=0,0,-9.8") == (
        "s.toml: sim.gravity: must have 2 components (the body is 2D), got 3"
    )


def test_controller_must_match_the_actuators():
    assert built_error(small(controller={"kind": "mlp"})).startswith(
        "s.toml: controller.kind: the body has no actuated springs"
    )
    walker = {"scene": {"system": "springs"}, "sim": {"dt": 4e-3, "steps": 5}, "body": {"preset": "walker2d"}}
    assert built_error(walker).startswith("s.toml: controller.kind: the body has 8 actuators, so it needs a")


def test_preset_options_and_controller_kinds():
    use("cpu", "f32")
    base = {
        "scene": {"system": "springs"},
        "sim": {"dt": 4e-3, "steps": 5, "substeps": 2},
        "body": {"preset": "walker2d", "mass": 0.2, "stiffness": 800.0},
    }
    for kind, names in (
        ("open_loop", ["controller.actions"]),
        ("periodic", ["controller.weights", "controller.frequency"]),
        ("mlp", ["controller.w0", "controller.b0", "controller.w1", "controller.b1"]),
    ):
        system, sim, _ = Scene.from_dict({**base, "controller": {"kind": kind}}, "s.toml").build()
        assert [n for n in system.params.names() if n.startswith("controller.")] == names
        assert system.params["particles.mass"].numpy() == pytest.approx(0.2)
        assert system.params["springs.stiffness"].numpy() == pytest.approx(800.0)
        sim.forward()
    system, _, _ = Scene.from_dict({**base, "controller": {"kind": "open_loop"}}, "s.toml").build()
    assert system.params["controller.actions"].shape == (3, 8)  # ceil(5 steps / 2 substeps) control steps


def test_batch_with_per_copy_parameters():
    use("cpu", "f64")
    data = small(params={"springs.stiffness": [[100.0], [200.0]]})
    data["sim"] = {"dt": 1e-3, "steps": 100, "batch": 2, "per_batch": ["springs.stiffness"]}
    system, sim, _ = Scene.from_dict(data, "s.toml").build()
    sim.forward()
    x = sim.trajectory(["x"])["x"]
    assert x.shape == (101, 2, 2, 2)
    assert np.abs(x[-1, 0] - x[-1, 1]).max() > 1e-4  # the copies differ only in stiffness
    assert built_error(small(), "sim.per_batch=['controller.w0']", "sim.batch=2").startswith(
        "s.toml: sim.per_batch: no controller parameter named 'controller.w0'"
    )


def test_backend_hints_and_flags():
    scene = Scene.from_dict(small(backend={"arch": "cpu", "precision": "f64"}), "s.toml")
    assert scene.backend() == ("cpu", "f64", True)
    assert scene.backend("cpu", "f32") == ("cpu", "f32", False)


# ----------------------------------------------------------------------------------------------------------
# Registry


def test_a_new_system_kind_plugs_in():
    calls = {}

    def build(ctx):
        calls["data"] = ctx.data
        raise ctx.error(("toy", "size"), "built")

    register_system(
        "toy",
        Table({"toy": Table({"size": Field("int", 3, min=1)})}),
        build,
        drawing=lambda system: Drawing(),
        doc="A toy.",
    )
    try:
        assert "toy" in system_kinds()
        assert "toy.size" in {
            r["key"] for r in __import__("diffsim.scene.schema", fromlist=["x"]).describe(scene_schema("toy"))
        }
        scene = Scene.from_dict({"scene": {"system": "toy"}, "sim": {"dt": 0.1, "steps": 1}}, "t.toml")
        assert scene.data["toy"] == {"size": 3}
        assert error({"scene": {"system": "toy"}, "sim": {"dt": 0.1, "steps": 1}, "body": {}}).startswith(
            "s.toml: unknown key 'body'"
        )
        use("cpu", "f32")
        with pytest.raises(DiffsimError, match="t.toml: toy.size: built"):
            scene.build()
        with pytest.raises(ValueError):
            register_system("toy2", Table({"sim": Table({})}), build)
    finally:
        unregister_system("toy")
    assert "toy" not in system_kinds()


def test_target_rows_are_matched_by_their_frame_numbers(tmp_path):
    """A target file's `frame` array says which rollout frame each row is: a target kept every 5 frames is compared
    at those frames; one that ends before the rollout's last compared frame is refused."""
    use("cpu", "f64")
    scene = Scene.from_dict(small(), "s.toml")
    system, sim, _ = scene.build(task=False)
    sim.forward()
    x = rollout(sim)["x"][:, 0]  # (21, 2, 2)
    path = tmp_path / "sparse.npz"
    np.savez(path, x=x[::5], frame=np.arange(0, 21, 5))
    _, sim2, task = Scene.from_dict(small(), "s.toml", target=str(path), fit=["springs.stiffness"]).build()
    assert list(task.target_frames) == [5, 10, 15, 20]
    np.testing.assert_array_equal(task.target, x[5::5])
    assert sim2.forward() == pytest.approx(0.0, abs=1e-20)
    message = built_error(
        small(), "sim.steps=22", f"task.loss.target={path}", "task.loss.kind=trajectory", "task.fit=[gravity]"
    )
    assert message == (
        "s.toml: task.loss.target: the target holds frames 0..20, the 22-step rollout is compared up to frame 22: "
        "give --steps 20 (sim.steps = 20) or a target that covers the rollout"
    )


def test_gradient_remedies_from_the_scene_file():
    """[sim] truncate and clip_adjoint reach the simulation: a window longer than the rollout and a clip above every
    adjoint give the exact gradient; a short window gives what `Simulation(truncate=W)` gives."""
    use("cpu", "f64")
    exact = load_scene("springs_sysid", steps=40).build()[1].value_and_grad()[1]
    remedied = load_scene("springs_sysid", ["sim.truncate=40", "sim.clip_adjoint=1e30"], steps=40).build()[1]
    assert (remedied.truncate, remedied.clip_adjoint) == (40, 1e30)
    for name, g in remedied.value_and_grad()[1].items():
        np.testing.assert_allclose(g, exact[name], rtol=1e-12, atol=1e-300, err_msg=name)
    _, short, _ = load_scene("springs_sysid", ["sim.truncate=5"], steps=40).build()
    direct = diffsim.Simulation(short.system, 40, loss=short.loss, truncate=5).value_and_grad()[1]
    stiffness = short.value_and_grad()[1]["springs.stiffness"]
    np.testing.assert_array_equal(stiffness, direct["springs.stiffness"])
    assert (
        np.abs(stiffness - exact["springs.stiffness"]).max() > 1e-3 * np.abs(exact["springs.stiffness"]).max()
    )
    with pytest.raises(DiffsimError, match=r"sim\.truncate: must be >= 1, got 0"):
        load_scene("springs_sysid", ["sim.truncate=0"])
