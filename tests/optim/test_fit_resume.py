"""Checkpointed fits: a fit resumed from its checkpoint takes the same iterates as one that was never stopped."""

import json

import numpy as np
import pytest

import diffsim
from diffsim.optim.fit import read_checkpoint
from tests.conftest import use
from tests.springs.test_fit import hanging_chain

NAMES = ["springs.stiffness", "springs.damping", "springs.rest_length"]


@pytest.fixture(scope="module")
def sim():
    use("cpu", "f64")
    system = diffsim.SpringSystem(hanging_chain(), dt=2e-3, ground=None)
    return diffsim.Simulation(
        system, 60, loss=diffsim.FinalPositionLoss([[0.1, 0.85], [0.2, 0.75], [0.3, 0.7]], points=[1, 2, 3])
    )


@pytest.fixture
def fresh(sim):
    """The simulation with its parameters at their initial values again."""
    start = sim.system.params.to_dict()
    yield sim
    sim.system.params.load_dict(start)


OPTIMIZERS = {
    "adam": lambda: diffsim.Adam(lr=0.02),
    "sgd": lambda: diffsim.SGD(lr=2e-4, momentum=0.6, clip_norm=50.0),
}


def _fit(sim, opt, iters, **kw):
    return diffsim.fit(sim, NAMES, optimizer=OPTIMIZERS[opt](), iters=iters, progress=False, **kw)


class _Stop(KeyboardInterrupt):
    pass


def _interrupt_at(iteration):
    def callback(it, _rec, _sim):
        if it == iteration:
            raise _Stop  # as Ctrl-C would, in the middle of the fit

    return callback


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_resumed_fit_takes_the_same_iterates(fresh, tmp_path, opt):
    start = fresh.system.params.to_dict()
    reference = _fit(fresh, opt, 9, restore_best=False)
    last = fresh.system.params.to_dict(NAMES)
    assert reference.loss_history[-1] < reference.loss_history[0]  # the fit does move

    fresh.system.params.load_dict(start)
    path = tmp_path / "fit.npz"
    with pytest.raises(_Stop):
        _fit(fresh, opt, 9, checkpoint=path, callback=_interrupt_at(5))
    saved = read_checkpoint(path)
    # the interrupted iteration (5) was not finished: the checkpoint holds iterations 0..4
    assert saved["iterations"] == 5 and saved["stopped"] is None
    assert [h["loss"] for h in saved["history"]] == reference.loss_history[:5]

    fresh.system.params.load_dict(
        {n: np.zeros_like(np.asarray(v)) + 1.0 for n, v in start.items() if n in NAMES}
    )
    resumed = _fit(fresh, opt, 9, resume=path, restore_best=False)
    assert resumed.loss_history == reference.loss_history  # bit for bit
    assert fresh.system.params.to_dict(NAMES) == last
    assert resumed.iterations == 9 and resumed.stopped == "iterations"
    assert [h["iteration"] for h in resumed.history] == list(range(9))


def test_a_finished_fit_continues_when_given_more_iterations(fresh, tmp_path):
    start = fresh.system.params.to_dict()
    reference = _fit(fresh, "adam", 8)
    fresh.system.params.load_dict(start)
    path = tmp_path / "fit.npz"
    first = _fit(fresh, "adam", 3, checkpoint=path, save_every=2)
    assert first.loss_history == reference.loss_history[:3]
    assert read_checkpoint(path)["stopped"] == "iterations"
    more = _fit(fresh, "adam", 8, resume=tmp_path / "fit.npz")
    assert more.loss_history == reference.loss_history
    assert more.params == reference.params


def test_a_checkpoint_is_written_every_save_every_iterations(fresh, tmp_path):
    path = tmp_path / "fit.npz"
    seen = []

    def look(it, _rec, _sim):
        seen.append(read_checkpoint(path)["iterations"])

    _fit(fresh, "adam", 7, checkpoint=path, save_every=3, callback=look)
    # read during iteration it: the checkpoint written before it (at the start, then after iterations 2 and 5)
    assert seen == [0, 0, 0, 3, 3, 3, 6]
    assert read_checkpoint(path)["iterations"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.npz"]


def test_resume_with_other_settings_is_refused(fresh, tmp_path):
    path = tmp_path / "fit.npz"
    _fit(fresh, "adam", 2, checkpoint=path)
    with pytest.raises(diffsim.DiffsimError, match=r"fit.npz: optimizer: written by adam\(lr=0.02"):
        diffsim.fit(fresh, NAMES, optimizer=diffsim.Adam(lr=0.03), iters=4, resume=path, progress=False)
    with pytest.raises(diffsim.DiffsimError, match=r"fit.npz: names: the checkpoint fits springs.stiffness"):
        diffsim.fit(fresh, NAMES[:2], optimizer=diffsim.Adam(lr=0.02), iters=4, resume=path, progress=False)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(2))
    with pytest.raises(diffsim.DiffsimError, match="bad.npz: not a diffsim fit checkpoint"):
        _fit(fresh, "adam", 4, resume=bad)


def test_a_fit_stopped_by_its_tolerance_resumes_to_its_result(fresh, tmp_path):
    path = tmp_path / "checkpoint.npz"
    done = _fit(fresh, "adam", 50, tol=10.0, checkpoint=path)  # the first loss is below 10
    assert done.stopped == "tolerance" and done.iterations == 1
    calls = []
    again = _fit(fresh, "adam", 50, tol=10.0, resume=tmp_path, callback=lambda *a: calls.append(a))
    assert calls == [] and again.stopped == "tolerance" and again.loss_history == done.loss_history
    (tmp_path / "empty").mkdir()
    with pytest.raises(diffsim.DiffsimError, match="empty: no checkpoint.npz in this folder"):
        _fit(fresh, "adam", 50, resume=tmp_path / "empty")


def test_lbfgs_restarts_from_the_best_iterate_and_says_so(fresh, tmp_path):
    path = tmp_path / "fit.npz"
    with pytest.raises(_Stop):
        diffsim.fit(
            fresh,
            NAMES,
            optimizer="lbfgs",
            iters=8,
            checkpoint=path,
            callback=_interrupt_at(4),
            progress=False,
        )
    saved = read_checkpoint(path)
    assert saved["iterations"] == 4
    with pytest.warns(UserWarning, match="restarts from the best iterate after 4 evaluations"):
        resumed = diffsim.fit(fresh, NAMES, optimizer="lbfgs", iters=8, resume=path, progress=False)
    assert resumed.iterations == 8
    assert (
        resumed.history[4]["loss"] == saved["best_loss"]
    )  # the restart's first evaluation is the best iterate


def test_resume_from_a_json_file_of_values_still_sets_the_start(fresh, tmp_path):
    path = tmp_path / "values.json"
    path.write_text(json.dumps({"springs.rest_length": [0.11, 0.11, 0.11]}))
    result = _fit(fresh, "adam", 1, resume=path)
    # the value went through the parameter's transform and back: equal to rounding
    np.testing.assert_allclose(result.params["springs.rest_length"], [0.11, 0.11, 0.11], rtol=1e-14, atol=0)


def test_by_default_a_checkpoint_is_written_when_a_second_has_passed(fresh, tmp_path, monkeypatch):
    import diffsim.optim.fit as fit_module

    path = tmp_path / "fit.npz"
    seen = []

    def look(it, _rec, _sim):
        seen.append(read_checkpoint(path)["iterations"])

    monkeypatch.setattr(fit_module, "SAVE_INTERVAL_S", 3600.0)  # never due: the start's checkpoint only
    _fit(fresh, "adam", 4, checkpoint=path, callback=look)
    assert seen == [0, 0, 0, 0] and read_checkpoint(path)["iterations"] == 4
    seen.clear()
    monkeypatch.setattr(fit_module, "SAVE_INTERVAL_S", 0.0)  # always due
    _fit(fresh, "adam", 4, checkpoint=path, callback=look)
    assert seen == [0, 1, 2, 3]
