"""Bad input gets a clear error naming the item and the file, never a crash or a silent NaN."""

import numpy as np
import pytest

from diffsim import DiffsimError, SimulationError
from diffsim.colliders import Collider
from diffsim.scene import Scene
from diffsim.systems.cloth import ClothModel, ClothSystem
from tests.conftest import use

SQUARE = """# two triangles
v 0 0 0
v 1 0 0
v 0 1 0
v 1 1 0
f 1 2 3
f 2 4 3
"""


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


def obj(tmp_path, text, name="cloth.obj"):
    path = tmp_path / name
    path.write_text(text)
    return path


def finalize(path):
    return ClothModel.from_obj(path).finalize()


def test_a_good_obj_loads(tmp_path):
    arrays = finalize(obj(tmp_path, SQUARE + "f 1/1/1 2/2/2 4/4/4 3/3/3\n".replace("f 1/1/1", "# f")))
    assert arrays["faces"].shape == (2, 3) and len(arrays["hinges"]) == 1
    quad = finalize(obj(tmp_path, "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1/1 2/2 3/3 4/4\n", "quad.obj"))
    assert quad["faces"].tolist() == [[0, 1, 2], [0, 2, 3]]  # a polygon becomes a fan
    np.testing.assert_allclose(quad["vertex_area"].sum(), 1.0)


def test_degenerate_triangle(tmp_path):
    path = obj(tmp_path, SQUARE + "v 2 0 0\nf 1 2 5\n")
    with pytest.raises(
        DiffsimError,
        match=r"cloth\.obj: line 9 \(face 3\): degenerate triangle \(zero area\): "
        r"vertices 1, 2, 5 are collinear",
    ):
        finalize(path)


def test_repeated_vertex_in_a_face(tmp_path):
    with pytest.raises(DiffsimError, match=r"line 8 \(face 3\): degenerate triangle: a vertex is repeated"):
        finalize(obj(tmp_path, SQUARE + "f 1 2 2\n"))


def test_non_manifold_edge(tmp_path):
    path = obj(tmp_path, SQUARE + "v 0.5 0.5 1\nf 2 3 5\n")
    with pytest.raises(
        DiffsimError,
        match=r"cloth\.obj: line 9 \(face 3\): non-manifold edge: the edge between "
        r"vertex 2 and vertex 3 is shared by 3 triangles \(faces 1, 2, 3\)",
    ):
        finalize(path)


def test_non_manifold_vertex(tmp_path):
    """Two triangles that touch at one vertex only (a bow tie)."""
    path = obj(tmp_path, "v 0 0 0\nv 1 0 0\nv 0 1 0\nv -1 0 0\nv 0 -1 0\nf 1 2 3\nf 1 4 5\n")
    with pytest.raises(
        DiffsimError,
        match=r"cloth\.obj: line 1 \(vertex 1\): non-manifold vertex: the triangles "
        r"around vertex 1 form 2 separate fans",
    ):
        finalize(path)


def test_unreferenced_vertex(tmp_path):
    path = obj(tmp_path, SQUARE.replace("v 1 1 0\n", "v 1 1 0\nv 5 5 5\n").replace("f 2 4 3", "f 2 4 3"))
    with pytest.raises(
        DiffsimError,
        match=r"cloth\.obj: line 6 \(vertex 5\): unreferenced vertex: no triangle "
        r"uses vertex 5",
    ):
        finalize(path)


def test_no_faces(tmp_path):
    with pytest.raises(DiffsimError, match=r"cloth\.obj: the mesh has no faces"):
        finalize(obj(tmp_path, "v 0 0 0\nv 1 0 0\nv 0 1 0\n"))


def test_face_naming_a_missing_vertex_and_bad_lines(tmp_path):
    with pytest.raises(DiffsimError, match=r"line 6 \(face 1\): names vertex 9, but the mesh has 4 vertices"):
        finalize(obj(tmp_path, SQUARE.replace("f 1 2 3", "f 1 2 9")))
    with pytest.raises(DiffsimError, match=r"cloth\.obj: line 1: a vertex needs three finite coordinates"):
        finalize(obj(tmp_path, "v 0 0\n"))
    with pytest.raises(DiffsimError, match=r"nope\.obj: file not found"):
        finalize(tmp_path / "nope.obj")


def test_pins_and_handles_naming_missing_vertices(tmp_path):
    model = ClothModel.from_obj(obj(tmp_path, SQUARE))
    model.pins = [0, 7]
    with pytest.raises(
        DiffsimError,
        match=r"cloth\.obj: pins\[1\]: names vertex 7, which does not exist \(the "
        r"mesh has 4 vertices, 1\.\.4\)",
    ):
        model.finalize()
    grid = ClothModel.grid(resolution=(3, 3), source="grid.toml")
    grid.handles = [8, 9]
    with pytest.raises(
        DiffsimError,
        match=r"grid\.toml: handles\[1\]: names vertex 9, which does not exist "
        r"\(the mesh has 9 vertices, 0\.\.8\)",
    ):
        grid.finalize()
    grid.handles, grid.pins = [4], [4]
    with pytest.raises(DiffsimError, match=r"vertex 4 is both pinned and a handle"):
        grid.finalize()


def test_material_errors():
    with pytest.raises(DiffsimError, match=r"grid: stretch_modulus: give either stretch_modulus"):
        ClothModel.grid(
            resolution=(3, 3), stretch_modulus=10.0, youngs_modulus=1e6, thickness=1e-3
        ).finalize()
    with pytest.raises(DiffsimError, match=r"grid: thickness: missing"):
        ClothModel.grid(resolution=(3, 3), youngs_modulus=1e6).finalize()
    with pytest.raises(DiffsimError, match=r"grid: density: must be > 0, got -1"):
        ClothModel.grid(resolution=(3, 3), density=-1.0).finalize()
    with pytest.raises(DiffsimError, match=r"grid: poisson_ratio: must be in \(-1, 1\)"):
        ClothModel.grid(resolution=(3, 3), poisson_ratio=1.0).finalize()
    mat = ClothModel.grid(resolution=(3, 3), youngs_modulus=2e6, thickness=1e-3, poisson_ratio=0.3).material()
    assert mat["stretch_modulus"] == pytest.approx(2e3)
    assert mat["bending_stiffness"] == pytest.approx(2e6 * 1e-9 / (12 * (1 - 0.09)))
    with pytest.raises(DiffsimError, match=r"grid: resolution: must be two vertex counts >= 2"):
        ClothModel.grid(resolution=(1, 3))


def test_system_errors():
    model = ClothModel.grid(resolution=(3, 3), source="c.toml")
    with pytest.raises(DiffsimError, match=r"c\.toml: dt: must be > 0"):
        ClothSystem(model, dt=0.0)
    with pytest.raises(
        DiffsimError, match=r"c\.toml: colliders\[0\]\.size: a sphere needs size = \[radius\]"
    ):
        ClothSystem(model, dt=1e-3, colliders=[Collider("sphere", size=[])])
    model.handles = [0]
    with pytest.raises(DiffsimError, match=r"c\.toml: handles: 1 handles need a controller"):
        ClothSystem(model, dt=1e-3)
    with pytest.raises(DiffsimError, match=r"unknown parameter names \['material\.stiffness'\]"):
        ClothSystem(ClothModel.grid(resolution=(3, 3)), dt=1e-3, per_batch=("material.stiffness",))


def scene(**tables):
    data = {
        "scene": {"name": "t", "system": "cloth"},
        "sim": {"dt": 1e-3, "steps": 5},
        "cloth": {"resolution": [3, 3]},
    }
    for key, value in tables.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return Scene.from_dict(data, "t.toml")


def test_scene_errors_name_the_key():
    with pytest.raises(
        DiffsimError, match=r"t\.toml: cloth\.pins\[1\]: names vertex 9, which does not exist"
    ):
        scene(cloth={"pins": [0, 9]}).build_system()
    with pytest.raises(
        DiffsimError,
        match=r"t\.toml: colliders\[0\]\.radius: missing required key for kind = "
        r"'sphere'",
    ):
        scene(colliders=[{"kind": "sphere", "position": [0, 0, 0]}]).build_system()
    with pytest.raises(
        DiffsimError,
        match=r"t\.toml: controller\.kind: the cloth has 1 handles, so it needs a "
        r"controller",
    ):
        scene(cloth={"handles": [0]}).build_system()
    with pytest.raises(DiffsimError, match=r"t\.toml: controller\.kind: the cloth has no handles"):
        scene(controller={"kind": "open_loop"}).build_system()
    with pytest.raises(
        DiffsimError, match=r"t\.toml: material\.stretch_modulus: give either stretch_modulus"
    ):
        scene(material={"stretch_modulus": 10.0, "youngs_modulus": 1e6, "thickness": 1e-3}).build_system()
    with pytest.raises(DiffsimError, match=r"t\.toml: cloth\.obj: missing required key for mesh = 'obj'"):
        scene(cloth={"mesh": "obj"}).build_system()


def test_unstable_step_is_diagnosed_not_silent():
    """Far past the stability limit: a warning at build time, then an error naming the step, the most deformed
    triangle and a stable dt instead of a NaN trajectory."""
    model = ClothModel.grid(
        size=(0.2, 0.2), resolution=(4, 4), stretch_modulus=5e4, density=0.1, source="fast"
    )
    model.velocities = np.random.default_rng(0).normal(size=(16, 3))
    with pytest.warns(
        UserWarning,
        match=r"fast: dt=0\.01 s is above the estimated stability limit .* for "
        r"stretching .* Use dt <= ",
    ):
        system = ClothSystem(model, dt=1e-2, gravity=(0.0, 0.0, 0.0))
    import diffsim

    sim = diffsim.Simulation(system, 300)
    with pytest.raises(SimulationError) as err:
        sim.run()
    text = str(err.value)
    assert "non-finite" in text and "at frame" in text
    assert "triangle" in text and "most deformed" in text
    limit = system.stability_limits()["stretching"]
    assert f"suggested dt <= {0.9 * limit:.3g} s" in text, text
