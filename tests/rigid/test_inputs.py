"""Bad input: every mistake raises DiffsimError naming the item (or warns, for penetration at the start and
non-unit quaternions)."""

import textwrap
import warnings

import numpy as np
import pytest

import diffsim
from diffsim.errors import DiffsimError
from diffsim.systems.rigid import RigidModel, RigidSystem
from tests.conftest import use


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


def two_boxes(dim=2):
    m = RigidModel(dim=dim, source="robot")
    m.add_body([0.0] * (dim - 1) + [0.5], name="torso")
    m.add_box("torso", [0.2] * dim)
    m.add_body([0.5] * (dim - 1) + [0.5], name="leg")
    m.add_box("leg", [0.1] * dim)
    return m


def test_joint_naming_a_missing_body():
    m = two_boxes()
    m.add_joint("revolute", "torso", "thigh", anchor=[0.3, 0.5])
    with pytest.raises(
        DiffsimError,
        match=r"robot: joints\[0\]\.b: names body 'thigh', which does not exist; "
        r"bodies: torso, leg",
    ):
        m.finalize()


def test_spring_and_shape_naming_a_missing_body():
    m = two_boxes()
    m.add_spring("torso", "tail", stiffness=10.0)
    with pytest.raises(DiffsimError, match=r"springs\[0\]\.b: names body 'tail'"):
        m.finalize()
    m = two_boxes()
    m.add_circle("ghost", 0.1)
    with pytest.raises(DiffsimError, match=r"shapes\[2\]\.body: names body 'ghost'"):
        m.finalize()


@pytest.mark.parametrize(
    "kw, where, message",
    [
        ({"density": -5.0}, "bodies[2].density", "must be > 0, got -5"),
        ({"mass": 0.0}, "bodies[2].mass", "must be > 0, got 0"),
        ({"mass": 1.0, "inertia": -1.0}, "bodies[2].inertia", "must be > 0"),
        ({"mass": 1.0, "density": 3.0}, "bodies[2].density", "either density or mass"),
    ],
)
def test_bad_mass(kw, where, message):
    m = two_boxes()
    m.add_body([1.0, 1.0], name="bad", **kw)
    m.add_circle("bad", 0.1)
    with pytest.raises(DiffsimError) as err:
        m.finalize()
    assert err.value.where == f"robot: {where}" and message in err.value.reason


@pytest.mark.parametrize(
    "size, message",
    [
        ([0.0, 0.1], "sizes must be > 0, got [0.0, 0.1]"),
        ([-0.1, 0.1], "sizes must be > 0"),
        ([0.1], "a box needs size = half extents (2 numbers), got [0.1]"),
    ],
)
def test_bad_shape_size(size, message):
    m = two_boxes()
    m.add_shape("leg", "box", size)
    with pytest.raises(DiffsimError) as err:
        m.finalize()
    assert err.value.where == "robot: shapes[2].size" and message in err.value.reason


def test_body_without_shapes_needs_mass_and_inertia():
    m = two_boxes()
    m.add_body([1.0, 1.0], name="point")
    with pytest.raises(DiffsimError, match=r"bodies\[2\]\.mass: body 'point' has no shapes"):
        m.finalize()


def test_unknown_kinds_and_motor_on_a_ball_joint():
    m = two_boxes()
    m.add_shape("leg", "cone", [0.1])
    with pytest.raises(DiffsimError, match=r"shapes\[2\]\.kind: unknown shape kind 'cone'"):
        m.finalize()
    m = two_boxes(dim=3)
    m.add_joint("ball", "torso", "leg", anchor=[0.3, 0.3, 0.5], name="hip")
    m.add_motor("hip")
    with pytest.raises(DiffsimError, match=r"motors\[0\]\.joint: motors drive revolute and prismatic joints"):
        m.finalize()


def test_quaternions_are_normalised_with_a_warning_and_zero_is_rejected():
    m = two_boxes(dim=3)
    m.bodies[1].orientation = [2.0, 0.0, 0.0, 0.0]
    with pytest.warns(UserWarning, match=r"bodies\[1\]\.orientation: quaternion .* has norm 2; normalised"):
        arrays = m.finalize()
    np.testing.assert_allclose(arrays["rot0"][1], [1.0, 0.0, 0.0, 0.0])
    m.bodies[1].orientation = [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(DiffsimError, match=r"bodies\[1\]\.orientation: a quaternion must not be zero"):
        m.finalize()


@pytest.mark.slow  # (compiles its own systems: kept out of the 60 s budget)
def test_penetration_at_start_warns_naming_the_bodies():
    m = RigidModel(dim=2, source="pile")
    m.add_body([0.0, 0.5], name="left", mass=1.0)
    m.add_circle("left", 0.1)
    m.add_body([0.15, 0.5], name="right", mass=1.0)
    m.add_circle("right", 0.1)
    m.add_body([1.0, 0.05], name="sunk", mass=1.0)
    m.add_circle("sunk", 0.1)
    system = RigidSystem(m, dt=1e-3, ground=0.0, contact_stiffness=1e3, ground_stiffness=1e3)
    sim = diffsim.Simulation(system, 2)
    with pytest.warns(UserWarning) as record:
        sim.forward()
    text = " ".join(str(w.message) for w in record)
    assert "pile: penetration at the start" in text
    assert (
        "body 'left' and body 'right' overlap by 0.05 m" in text
        or "body 'right' and body 'left' overlap" in text
    )
    assert "body 'sunk' and the ground overlap by 0.05 m" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim.forward()  # reported once


@pytest.mark.slow  # (compiles its own systems: kept out of the 60 s budget)
def test_controller_size_and_unknown_per_batch_names():
    m = two_boxes()
    m.add_joint("revolute", "torso", "leg", anchor=[0.3, 0.5], name="hip")
    m.add_motor("hip")
    with pytest.raises(DiffsimError, match="1 motors or springs are actuated but no controller is given"):
        RigidSystem(m, dt=1e-3)
    with pytest.raises(DiffsimError, match="controller has 2 outputs, the model has 1 actuators"):
        RigidSystem(m, dt=1e-3, controller=diffsim.OpenLoop(2, 10))
    with pytest.raises(DiffsimError, match="unknown parameter names"):
        RigidSystem(two_boxes(), dt=1e-3, per_batch=("springs.stiffness",), batch=2)


def test_scene_errors_name_file_and_key(tmp_path):
    from diffsim.scene import load_scene

    path = tmp_path / "robot.toml"
    path.write_text(
        textwrap.dedent("""
        [scene]
        system = "rigid"
        [sim]
        dt = 0.001
        steps = 10
        [[bodies]]
        name = "torso"
        position = [0.0, 0.5]
        [[shapes]]
        body = "torso"
        kind = "box"
        size = [0.2, 0.1]
        [[joints]]
        kind = "revolute"
        a = "torso"
        b = "thigh"
        anchor = [0.2, 0.5]
    """)
    )
    scene = load_scene(path)
    with pytest.raises(DiffsimError) as err:
        scene.build()
    assert err.value.where == f"{path}: joints[0].b"
    assert "names body 'thigh', which does not exist" in err.value.reason
    path.write_text(path.read_text().replace("size = [0.2, 0.1]", "size = [0.2, 0.0]"))
    with pytest.raises(DiffsimError, match=r"shapes\[0\]\.size\[1\]: must be > 0"):
        load_scene(path)
