"""A trial step that blows the simulation up is rejected and the fit steps back; it is not the end of the fit.

The problem: a pair of 0.1 kg particles joined by a dashpot (and a negligible spring), no gravity, no ground, dt =
0.01 s, 60 steps (f64). Semi-implicit Euler multiplies the closing speed by r = 1 - c dt / m_red each step (m_red =
0.05 kg): stable for c < 2 m_red / dt = 10 N s/m, and past it |r| > 1 grows without bound (c = 13.6: |r| = 1.72,
1.72^60 = 1e14, caught by the divergence check). The target is the trajectory at c = 7.5; the fits start at 5.
"""

import numpy as np
import pytest

import diffsim
from diffsim import SimulationError
from diffsim.optim import fit as fit_module
from tests.conftest import use

TRUE_DAMPING = 7.5
START = 5.0


@pytest.fixture(scope="module")
def sim():
    use("cpu", "f64")
    m = diffsim.SpringModel(dim=2)
    m.add_particle([0.0, 0.0], mass=0.1)
    m.add_particle([0.2, 0.0], velocity=[1.0, 0.5], mass=0.1)
    m.add_spring(0, 1, stiffness=1e-3, damping=TRUE_DAMPING)
    system = diffsim.SpringSystem(m, dt=0.01, gravity=[0.0, 0.0], ground=None)
    s = diffsim.Simulation(system, 60)
    s.forward()
    s.set_loss(diffsim.PointLoss(s.trajectory()["x"][1:, 0]))
    return s


@pytest.fixture
def damping(sim):
    p = sim.system.params["springs.damping"]
    p.transform = None
    p.set(np.array([START]))
    yield p
    p.transform = None


def statuses(result):
    return [h["status"] for h in result.history]


def test_lbfgs_backtracks_from_a_blown_up_trial_point(sim, damping):
    # On log(c), L-BFGS-B's first trial is a unit step: c = 5 e = 13.6, past the bound of 10, and the rollout
    # diverges. Seen as a plateau above the best loss (`rejected_loss`) with a zero gradient, the point makes the line search backtrack, and
    # the fit goes on to the true damping. (Seen as inf or 1e300, scipy stopped at the start point, c = 5.)
    damping.transform = "log"
    result = diffsim.fit(sim, ["springs.damping"], optimizer="lbfgs", iters=25, progress=False)
    assert statuses(result)[:2] == ["ok", "rejected"], statuses(result)
    rejected = result.history[1]
    assert np.isnan(rejected["loss"]) and "diverging" in rejected["cause"] and "at frame" in rejected["cause"]
    assert result.stopped == "converged" and result.rejected == 1
    assert result.params["springs.damping"][0] == pytest.approx(TRUE_DAMPING, rel=1e-6)
    assert result.best_loss < 1e-6 * result.history[0]["loss"]
    assert result.best_iteration == len(result.history) - 1
    assert result.history[result.best_iteration]["loss"] == result.best_loss


def test_adam_steps_back_halves_the_step_and_reaches_a_lower_loss(sim, damping):
    # Adam's first step on log(c) with lr 1.5 is about +1.5: c = 22, which diverges. The retry from c = 5 with
    # the optimizer's state as before and half the step, +0.75 (c = 10.6, just unstable, but finite: an accepted
    # evaluation with a large loss), then steps lower than the starting loss.
    damping.transform = "log"
    result = diffsim.fit(sim, ["springs.damping"], optimizer="adam", lr=1.5, iters=6, progress=False)
    assert statuses(result)[:3] == ["ok", "rejected", "ok"], statuses(result)
    assert result.stopped == "iterations" and result.rejected == 1 and result.iterations == 6
    c2 = START * np.exp(0.75)  # the retried step: half of Adam's first step, lr * sign(g) = +1.5
    assert "damping" in result.history[1]["cause"]  # the hint names the dashpot's bound
    first = result.history[0]["loss"]
    assert result.best_loss < 0.5 * first
    assert result.best_iteration >= 3
    assert result.history[result.best_iteration]["status"] == "ok"
    assert sim.system.params["springs.damping"].numpy()[0] == pytest.approx(
        result.params["springs.damping"][0]
    )
    assert result.params["springs.damping"][0] != pytest.approx(c2)  # it moved on after the retry


def test_retry_is_the_failed_step_scaled_by_half(sim, damping):
    # The retry starts from the last accepted point with the optimizer's state before the failed update: for Adam
    # the same direction, half the length (in the unconstrained coordinate, log c).
    damping.transform = "log"
    seen = []

    def record(_it, rec, s):
        seen.append((rec["status"], float(s.system.params["springs.damping"].numpy()[0])))

    diffsim.fit(sim, ["springs.damping"], optimizer="adam", lr=1.5, iters=3, progress=False, callback=record)
    (s0, c0), (s1, c1), (s2, c2) = seen
    assert (s0, s1) == ("ok", "rejected") and c0 == pytest.approx(START, rel=1e-12)
    assert np.log(c1 / START) == pytest.approx(1.5, rel=1e-3)  # lr g / (|g| + eps), eps = 1e-8
    assert np.log(c2 / START) / np.log(c1 / START) == pytest.approx(0.5, rel=1e-9)


def test_every_trial_exploding_stops_unstable_with_the_best_iterate(sim, damping):
    # Plain gradient descent with an absurd rate: every retry, even after five halvings, lands far past the bound.
    result = diffsim.fit(sim, ["springs.damping"], optimizer="sgd", lr=1e9, iters=20, progress=False)
    assert result.stopped == "unstable"
    assert statuses(result) == ["ok"] + ["rejected"] * fit_module.MAX_REJECTIONS
    assert result.best_iteration == 0 and result.best_loss == result.history[0]["loss"]
    assert result.final_loss == result.best_loss
    assert result.params["springs.damping"] == [START]
    assert sim.system.params["springs.damping"].numpy()[0] == START  # restored, not the last (exploded) trial
    assert result.message.startswith(f"{fit_module.MAX_REJECTIONS} evaluations in a row were rejected")
    assert f"at iteration {fit_module.MAX_REJECTIONS}: diverging " in result.message
    # restore_best=False still never leaves the parameters at a rejected point
    damping.set(np.array([START]))
    result = diffsim.fit(
        sim,
        ["springs.damping"],
        optimizer="sgd",
        lr=1e9,
        iters=20,
        progress=False,
        restore_best=False,
        max_rejections=2,
    )
    assert result.stopped == "unstable" and statuses(result) == ["ok", "rejected", "rejected"]
    assert sim.system.params["springs.damping"].numpy()[0] == START


def test_lbfgs_stops_unstable_after_repeated_rejections(sim, damping, monkeypatch):
    # A line search that never finds a finite point: every evaluation after the first is made to fail.
    damping.transform = "log"
    calls = {"n": 0}
    forward = sim.forward

    def failing_forward():
        calls["n"] += 1
        if calls["n"] > 1:
            raise SimulationError("x", 3, "planted")
        return forward()

    monkeypatch.setattr(sim, "forward", failing_forward)
    result = diffsim.fit(
        sim, ["springs.damping"], optimizer="lbfgs", iters=25, max_rejections=3, progress=False
    )
    assert result.stopped == "unstable"
    assert statuses(result) == ["ok", "rejected", "rejected", "rejected"]
    assert "non-finite x at frame 3 (planted)" in result.message
    assert result.params["springs.damping"] == [pytest.approx(START)]


def test_a_starting_point_that_blows_up_raises(sim, damping):
    # Nothing to go back to: the error is the rollout's, as without a fit.
    damping.set(np.array([13.6]))
    with pytest.raises(
        SimulationError, match=r"diverging (x|v) at frame \d+ .*damping 13.6 N s/m\) needs dt <"
    ):
        diffsim.fit(sim, ["springs.damping"], optimizer="adam", iters=3, progress=False)


def test_a_step_out_of_a_parameters_range_is_rejected(sim, damping):
    # On log(c), a rate of 1e12 sends c to exp(+-1e9): 0 or inf, which the parameter refuses. That trial is rejected
    # like a blown-up rollout, and the fit ends unstable at the start, not with the parameter's error.
    damping.transform = "log"
    result = diffsim.fit(
        sim, ["springs.damping"], optimizer="sgd", lr=1e12, iters=20, max_rejections=3, progress=False
    )
    assert result.stopped == "unstable" and statuses(result) == ["ok", "rejected", "rejected", "rejected"]
    assert result.history[1]["cause"].startswith("the trial step left a parameter's range: springs.damping: ")
    assert result.params["springs.damping"] == [pytest.approx(START)]


class _Interrupt(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("stop_at", [2, 4])
def test_a_fit_with_a_rejected_step_resumes_exactly(sim, damping, tmp_path, stop_at):
    # The checkpoint holds what the rejection changed: the history's rejected row, the halved step, the optimizer's
    # state from before the failed update, the counts. Stopped after the rejection (iteration 1) and resumed, the
    # fit takes the same iterates as one that was never stopped.
    damping.transform = "log"
    kw = dict(optimizer="adam", lr=1.5, iters=7, progress=False, restore_best=False)
    whole = diffsim.fit(sim, ["springs.damping"], **kw)
    assert statuses(whole)[:3] == ["ok", "rejected", "ok"] and whole.rejected == 1

    def interrupt(it, _rec, _sim):
        if it == stop_at:
            raise _Interrupt

    damping.set(np.array([START]))
    path = tmp_path / "fit.npz"
    with pytest.raises(_Interrupt):
        diffsim.fit(sim, ["springs.damping"], checkpoint=path, callback=interrupt, **kw)
    saved = fit_module.read_checkpoint(path)
    assert saved["iterations"] == stop_at and saved["stopped"] is None
    assert [h["status"] for h in saved["history"]] == statuses(whole)[:stop_at]
    assert saved["history"][1]["cause"] == whole.history[1]["cause"]
    assert saved["step_scale"] == 0.5 and saved["rejected"] == 1

    damping.set(np.array([1.0]))  # the checkpoint, not the parameter, says where the fit is
    resumed = diffsim.fit(sim, ["springs.damping"], resume=path, **kw)
    assert statuses(resumed) == statuses(whole)
    np.testing.assert_array_equal(resumed.loss_history, whole.loss_history)  # bit for bit, NaN for NaN
    assert resumed.params == whole.params
    assert (resumed.best_loss, resumed.best_iteration, resumed.final_loss, resumed.rejected) == (
        whole.best_loss,
        whole.best_iteration,
        whole.final_loss,
        whole.rejected,
    )
