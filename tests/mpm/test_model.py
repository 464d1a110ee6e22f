"""Particle sampling (boxes, spheres, voxel masks) with a stated number of particles per cell; no kernels."""

import numpy as np
import pytest

from diffsim import DiffsimError
from diffsim.systems.mpm import MPMModel


def model(dim=2, res=32):
    m = MPMModel(dim=dim, res=res, dx=1.0 / res)
    m.add_material("jelly", "elastic", density=1200.0)
    return m


def test_box_lattice_has_ppc_particles_per_cell_and_its_exact_volume():
    m = model()
    idx = m.add_box([0.25, 0.25], [0.5, 0.375], "jelly", ppc=4)  # 8 x 4 cells, 2 x 2 particles each
    a = m.finalize()
    assert len(idx) == 8 * 4 * 4
    assert a["volume"].sum() == pytest.approx(0.25 * 0.125, rel=1e-12)
    x = a["x"]
    assert x[:, 0].min() == pytest.approx(0.25 + 1 / 128) and x[:, 0].max() == pytest.approx(0.5 - 1 / 128)


def test_sphere_and_voxels():
    m = model(dim=3, res=16)
    sphere = m.add_sphere([0.5, 0.5, 0.5], 0.2, "jelly", ppc=8)
    mask = np.zeros((3, 2, 2), dtype=bool)
    mask[0, 0, 0] = mask[2, 1, 1] = True
    voxels = m.add_voxels(mask, origin=[0.1, 0.1, 0.1], voxel_size=1 / 16, material="jelly", ppc=8)
    a = m.finalize()
    # a ball sampled on a lattice of spacing dx / 2: about (4/3 pi r^3) / (dx / 2)^3 particles, each carrying an
    # equal share of the exact volume
    expected = 4 / 3 * np.pi * 0.2**3 / (1 / 32) ** 3
    assert len(sphere) == pytest.approx(expected, rel=0.1)  # 1045 lattice points for 1098: r is 6.4 spacings
    assert a["volume"][: len(sphere)].sum() == pytest.approx(4 / 3 * np.pi * 0.2**3, rel=1e-12)
    assert np.all(np.linalg.norm(a["x"][: len(sphere)] - 0.5, axis=1) <= 0.2)
    # two occupied voxels of one cell each: 8 particles in each
    assert len(voxels) == 16
    xv = a["x"][voxels.start :]
    assert np.all((xv[:8] > 0.1) & (xv[:8] < 0.1 + 1 / 16))
    assert a["volume"][voxels.start :].sum() == pytest.approx(2 / 16**3, rel=1e-12)


def test_random_sampling_when_ppc_is_not_a_perfect_power():
    m = model()
    idx = m.add_box([0.25, 0.25], [0.5, 0.5], "jelly", ppc=5, seed=3)
    assert len(idx) == 5 * 8 * 8
    x = m.finalize()["x"]
    assert np.all((x >= 0.25) & (x <= 0.5))


def test_bodies_carry_their_velocity_and_materials_their_kind():
    m = model()
    m.add_material("water", "fluid", bulk_modulus=2e4)
    m.add_box([0.2, 0.2], [0.3, 0.3], "jelly", velocity=[1.0, 2.0])
    m.add_sphere([0.6, 0.6], 0.05, "water")
    a = m.finalize()
    np.testing.assert_array_equal(a["body_velocity"], [[1.0, 2.0], [0.0, 0.0]])
    assert set(a["material"][a["body"] == 1]) == {1}
    assert m.materials[1].wave_speed() == pytest.approx(np.sqrt(2e4 / 1000.0))


def test_empty_or_inverted_shapes_are_refused():
    m = model()
    with pytest.raises(DiffsimError, match=r"a box needs hi > lo on every axis"):
        m.add_box([0.5, 0.2], [0.4, 0.3], "jelly")
    with pytest.raises(DiffsimError, match=r"the voxel mask is empty"):
        m.add_voxels(np.zeros((2, 2)), [0.1, 0.1], 0.1, "jelly")
    with pytest.raises(DiffsimError, match=r"no particles"):
        m.finalize()
