"""Bad input gets a clear message naming the item and the value: particles off the grid, a time step past the CFL
limit, an incompressible Poisson ratio, and scene-file mistakes."""

import numpy as np
import pytest

import diffsim
from diffsim import DiffsimError, SimulationError
from diffsim.scene.scene import Scene
from diffsim.systems.mpm import MPMModel, MPMSystem
from tests.conftest import use


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


def block(lo=(0.3, 0.3), hi=(0.5, 0.5), E=1e4, nu=0.3):
    m = MPMModel(dim=2, res=16, dx=1 / 16, source="block.toml")
    m.add_material("jelly", "elastic", density=1000.0, youngs_modulus=E, poisson_ratio=nu)
    m.add_box(list(lo), list(hi), "jelly")
    return m


def test_particles_outside_the_grid_are_counted():
    # the grid's interior is [0.5 dx, (res - 1.5) dx) = [0.03125, 0.90625): a box reaching to 0.95 sticks out
    with pytest.raises(
        DiffsimError,
        match=r"block.toml: bodies\[0\]: 8 of 64 particles lie outside the grid's "
        r"interior \[0.03125, 0.90625\) m on every axis",
    ) as err:
        MPMSystem(block(lo=(0.7, 0.3), hi=(0.95, 0.55)), dt=1e-3)
    assert "the first is particle" in str(err.value)


def test_time_step_past_the_cfl_limit_warns_with_the_limit():
    model = block(E=1e6)
    c = np.sqrt(1e6 * 0.7 / (1.3 * 0.4) / 1000)  # P-wave speed sqrt((lambda + 2 mu) / rho) for nu = 0.3
    limit = 0.9 * (1 / 16) / c
    with pytest.warns(
        UserWarning,
        match=rf"dt=0.005 s is above the CFL limit of explicit MPM, dt_max = "
        rf"{limit:.3g} s",
    ) as record:
        MPMSystem(model, dt=5e-3)
    assert f"wave speed c = {c:.4g} m/s" in str(record[0].message)


def test_blow_up_names_quantity_frame_and_limit():
    """Far past the limit the rollout goes non-finite: the error names the quantity, the frame and the CFL limit."""
    model = block(E=1e6)
    model.bodies[0].velocity[:] = [0.0, -2.0]
    with pytest.warns(UserWarning, match="CFL limit"):
        system = MPMSystem(model, dt=2e-2)
    sim = diffsim.Simulation(system, 200)
    with pytest.raises(
        SimulationError, match=r"non-finite \w+ at frame \d+ .*the CFL limit of this model is about"
    ):
        sim.forward()


@pytest.mark.parametrize("nu", [0.5, 0.6])
def test_poisson_ratio_of_one_half_or_more_is_refused(nu):
    with pytest.raises(
        DiffsimError,
        match=rf"materials\[0\].poisson_ratio: must be < 0.5, got {nu:g}: at 0.5 the "
        "material is incompressible",
    ):
        block(nu=nu)


def test_unknown_material_and_bad_ppc():
    m = MPMModel(dim=2, res=16, dx=1 / 16, source="s.toml")
    m.add_material("jelly", "elastic")
    with pytest.raises(DiffsimError, match=r"no material named 'gel' \(materials: jelly\)"):
        m.add_box([0.3, 0.3], [0.5, 0.5], "gel")
    with pytest.raises(DiffsimError, match=r"bodies\[0\].ppc: must be > 0, got -4"):
        m.add_box([0.3, 0.3], [0.5, 0.5], "jelly", ppc=-4)
    with pytest.raises(DiffsimError, match=r"a fluid cannot be actuated"):
        m.add_material("water", "fluid")
        m.add_box([0.3, 0.3], [0.5, 0.5], "water", actuator=0)


SCENE = {
    "scene": {"system": "mpm"},
    "sim": {"dt": 1e-3, "steps": 10},
    "grid": {"res": [16]},
    "materials": [{"name": "jelly", "kind": "elastic"}],
    "bodies": [{"shape": "box", "material": "jelly", "lo": [0.3, 0.3], "hi": [0.5, 0.5]}],
}


def scene_with(**changes):
    import copy

    raw = copy.deepcopy(SCENE)
    for path, value in changes.items():
        table, _, key = path.partition("__")
        target = raw.setdefault(table, {})
        target = target[0] if isinstance(target, list) else target
        target[key] = value
    return raw


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"materials__poisson_ratio": 0.5},
            r"x.toml: materials\[0\].poisson_ratio: must be < 0.5, got 0.5: at 0.5",
        ),
        (
            {"bodies__material": "gel"},
            r"x.toml: bodies\[0\].material: no material named 'gel' \(materials: jelly\)",
        ),
        (
            {"bodies__shape": "sphere"},
            r"x.toml: bodies\[0\].center: missing required key for shape = 'sphere'",
        ),
        (
            {"bodies__hi": [1.5, 0.5]},
            r"x.toml: bodies\[0\]: 114 of 228 particles lie outside the grid's interior",
        ),
        ({"bodies__radius": 0.1}, r"x.toml: bodies\[0\].radius: applies to shape = 'sphere', not 'box'"),
        ({"walls__mode": "glue"}, r"x.toml: walls.mode: must be one of sticky, slip, friction, none"),
    ],
)
def test_scene_mistakes_name_file_key_and_value(changes, message):
    with pytest.raises(DiffsimError, match=message):
        Scene.from_dict(scene_with(**changes), source="x.toml").build_system()
