"""Runtime defaults from the environment, and a user loss written as a Taichi kernel."""

import numpy as np
import pytest
import taichi as ti

import diffsim
from diffsim import runtime
from diffsim.optim.losses import LeafLoss
from tests.conftest import use


def test_environment_gives_the_defaults(monkeypatch):
    monkeypatch.setenv("DIFFSIM_PRECISION", "f64")
    monkeypatch.setenv("DIFFSIM_ARCH", "cpu")
    diffsim.init()
    assert runtime.current() == {"arch": "cpu", "precision": "f64", "debug": False}
    monkeypatch.setenv("DIFFSIM_PRECISION", "f16")
    with pytest.raises(diffsim.DiffsimError, match="unknown precision 'f16'"):
        diffsim.init()
    use("cpu", "f64")


def test_too_many_field_groups_raise_a_clear_error_instead_of_crashing():
    """Taichi crashes (segmentation fault) past 512 SNode trees per process; diffsim refuses before that, names
    what it was allocating, and says that init() frees them."""
    diffsim.init(arch="cpu", precision="f32")
    made = []
    message = r"p\d+: this process already holds \d+ groups of Taichi fields"
    with pytest.raises(diffsim.DiffsimError, match=message) as info:
        for k in range(runtime.FIELD_GROUP_LIMIT):
            made.append(
                diffsim.Parameter(f"p{k}", (2,), 1.0)
            )  # each a field of its own, after the first launch
    assert "diffsim.init()" in str(info.value)
    assert runtime.FIELD_GROUP_LIMIT - 2 * runtime.FIELD_GROUP_MARGIN < runtime.field_groups()
    assert runtime.field_groups() <= runtime.FIELD_GROUP_LIMIT - runtime.FIELD_GROUP_MARGIN
    assert float(made[-1].numpy()[0]) == 1.0  # what was made still works
    diffsim.init(arch="cpu", precision="f32")
    assert runtime.field_groups() < 8
    use("cpu", "f64")


@ti.data_oriented
class HeightAboveLoss(LeafLoss):
    """A user loss: sum over frames of max(0, y - ceiling)^2 for every point (penalise flying too high)."""

    def __init__(self, ceiling: float, every: int = 1):
        super().__init__()
        self.ceiling = ceiling
        self.every = every

    def schedule(self, steps):
        return [(f, 0, 1.0) for f in range(self.every, steps + 1, self.every)]

    @ti.kernel
    def eval(self, x: ti.template(), f: ti.i32, row: ti.i32, coef: float):
        for b, i in ti.ndrange(x.shape[1], x.shape[2]):
            over = ti.max(x[f, b, i][1] - self.ceiling, 0.0)
            self.value[b] += coef * over * over


def test_user_loss_kernel_composes_and_differentiates():
    use("cpu", "f64")
    model = diffsim.SpringModel(dim=2)
    model.add_particle([0.0, 1.0], velocity=[0.0, 3.0])
    model.add_particle([0.2, 1.0], velocity=[0.0, 2.0])
    model.add_spring(0, 1, stiffness=50.0, damping=0.1)
    system = diffsim.SpringSystem(model, dt=1e-3, ground=None)
    loss = HeightAboveLoss(ceiling=1.1, every=10) + 0.1 * diffsim.FinalPositionLoss(np.zeros((2, 2)))
    sim = diffsim.Simulation(system, 300, loss=loss)
    value = sim.forward()
    x = sim.trajectory()["x"][:, 0]
    expected = np.sum(np.maximum(x[10::10, :, 1] - 1.1, 0) ** 2) + 0.1 * np.mean(np.sum(x[-1] ** 2, axis=-1))
    assert abs(value - expected) < 1e-10 * expected
    report = diffsim.gradcheck(sim, ["initial.velocity", "springs.stiffness"])
    assert report.passed, report.summary()


def test_fast_fill_sets_every_element_of_scalar_vector_and_matrix_fields():
    # `filler` replaces Taichi's `fill` in the per-iteration gradient zeroing: serial below SERIAL_FILL_BELOW scalars,
    # parallel above. Poisoned with NaN first, so that a fill computed as x * 0 (NaN * 0 = NaN) would fail.
    from diffsim.engine.fill import SERIAL_FILL_BELOW, filler

    use("cpu", "f64")
    fields = [
        ti.field(ti.f64, shape=(3, 5)),
        ti.Vector.field(3, ti.f64, shape=(2, 4, 2)),
        ti.Matrix.field(2, 3, ti.f64, shape=(7,)),
        ti.field(ti.f64, shape=(SERIAL_FILL_BELOW + 3,)),  # the parallel path
    ]
    for fld in fields:
        fld.fill(np.nan)
        fill = filler(fld)
        fill(2.5)
        assert np.all(fld.to_numpy() == 2.5)
        fill(0.0)  # a second launch through the reused launch context, with a new argument
        assert np.all(fld.to_numpy() == 0.0)
        fld.fill(np.nan)
        fill(0.0)  # the same argument again: the context keeps it, and the launch still happens
        assert np.all(fld.to_numpy() == 0.0)


@pytest.mark.parametrize("precision", ["f32", "f64"])
def test_nonfinite_scan_finds_the_first_bad_frame_for_every_field_rank(precision):
    # The check after each rollout window: frames x copies x up to three element axes, scalar and vector fields.
    # Bad means NaN, Inf, or, with a factor > 0, a magnitude above factor x max(1, scale[slot]) (the divergence check).
    # A NaN and an Inf are planted in different frames, copies and elements; the scan must return the earlier
    # frame inside [start, stop) and ignore bad values outside it. Both variants: the CPU's nested loops (what
    # nonfinite_kernel picks here) and the GPUs' one thread per element.
    from diffsim.engine.state import _first_bad_grouped, nonfinite_kernel

    use("cpu", precision)
    real = ti.f64 if precision == "f64" else ti.f32
    out = ti.field(ti.i32, shape=())
    scale = ti.field(real, shape=(2,))
    scale.from_numpy(np.array([7.0, 0.5]))
    for tail in [(), (5,), (4, 3), (3, 2, 4)]:
        for dim in (None, 3):
            shape = (9, 2, *tail)
            fld = ti.field(real, shape=shape) if dim is None else ti.Vector.field(dim, real, shape=shape)
            for kernel in (nonfinite_kernel(fld), _first_bad_grouped):

                def scan(start, stop, factor=0.0, slot=1, kernel=kernel, fld=fld):
                    out[None] = 2**30
                    kernel(fld, out, scale, start, stop, slot, factor)
                    return int(out[None])

                arr = np.zeros(fld.shape + (() if dim is None else (dim,)))
                fld.from_numpy(arr)
                assert scan(0, 9) == 2**30
                last = (1, *[k - 1 for k in tail]) + (() if dim is None else (dim - 1,))
                arr[(6, *last)] = np.inf  # the last copy, the last element, the last component
                arr[(2, 0) + (0,) * len(tail) + (() if dim is None else (1,))] = np.nan
                fld.from_numpy(arr)
                assert scan(0, 9) == 2
                assert scan(3, 9) == 6  # the NaN lies before the window
                assert scan(3, 6) == 2**30  # and the Inf after it
                # the divergence bound: a finite component past it in magnitude counts as bad, one at it does not
                arr[(4, 1) + (0,) * len(tail) + (() if dim is None else (dim - 1,))] = -3e6
                fld.from_numpy(arr)
                assert scan(3, 6) == 2**30  # factor 0: finiteness only
                assert scan(3, 6, factor=3e6) == 2**30  # bound 3e6 x max(1, scale[1] = 0.5)
                assert scan(3, 6, factor=2.9e6) == 4
                assert scan(0, 9, factor=2.9e6) == 2  # the NaN still comes first
                assert scan(3, 6, factor=3e6 / 7 * 1.01, slot=0) == 2**30  # bound x max(1, scale[0] = 7)
                assert scan(3, 6, factor=3e6 / 7 * 0.99, slot=0) == 4


def test_a_rollout_too_large_for_memory_is_refused_before_allocation(monkeypatch):
    """Any system's Simulation estimates its window (and snapshots) from the field specs and refuses, with the
    figure and the remedy, what would not fit, instead of allocating it."""
    from diffsim.engine import memory
    from tests.springs.bodies import square

    use("cpu", "f64")
    system = diffsim.SpringSystem(square(dim=2), dt=1e-3)
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 * 2**20)
    # 4 masses, 2D, x and v (+ forces and gradients) in f64: a few hundred bytes per frame -> 10^6 frames is > 64 MiB
    with pytest.raises(
        diffsim.DiffsimError,
        match=r"steps: a rollout of 1000000 steps keeping 1000001 frames .* "
        r"needs about .* more than the 64 MiB available; use checkpointed storage",
    ):
        diffsim.Simulation(system, 1_000_000)
    sim = diffsim.Simulation(system, 1_000_000, checkpoint_every=1000)  # 1,001 + 1,002 frames fit
    assert sim.memory_bytes()["total"] < 64 * 2**20
