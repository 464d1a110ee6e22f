"""Optimizers and `fit()`.

Optimizers see a flat vector of *unconstrained* coordinates (`ParameterSet.get_flat`): each parameter's transform
(log, sigmoid) is applied in between, so positivity and ranges hold by construction. Parameters with plain bounds are
projected back into them after each first-order step; L-BFGS-B (scipy) honours them directly.

Rejected steps. An evaluation whose rollout fails (`SimulationError`: NaN, Inf or divergence) or whose loss or
gradient is not finite is *rejected*: it is recorded in the history with status "rejected" and its cause, and the fit
goes on from the last accepted point. Adam and SGD go back to the last accepted iterate (and the optimizer state
before the failed update) and retry with the step scaled by half; the scale stays reduced for the rest of the fit
(one failure says the step size was too large for this problem). L-BFGS-B is given a loss above the best one (twice
the best, plus the decrease its gradient predicted for the step) and a zero gradient at the rejected point: its line
search then backtracks (an infinite or huge loss would make
its cubic interpolation step back to the start point, and scipy end the fit there: see `rejected_loss`).
`max_rejections` rejected evaluations in a row stop the fit with stopped="unstable" and the best iterate restored;
a rejected first evaluation (the starting point) raises, as there is nothing to go back to.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import DiffsimError, SimulationError


class Optimizer:
    name = "optimizer"
    first_order = True

    def __init__(self, lr: float = 1e-2, clip_norm: float | None = None):
        if not (lr > 0 and math.isfinite(lr)):
            raise DiffsimError(f"must be > 0, got {lr}", where="optimizer.lr")
        self.lr = float(lr)
        self.clip_norm = clip_norm

    def clip(self, g: np.ndarray) -> np.ndarray:
        if self.clip_norm is None:
            return g
        norm = float(np.linalg.norm(g))
        return g * (self.clip_norm / norm) if norm > self.clip_norm else g

    def reset(self, n: int) -> None:
        pass

    def update(self, u: np.ndarray, g: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class SGD(Optimizer):
    """u <- u - lr * m, m <- momentum * m + g (heavy ball; momentum=0 is plain gradient descent)."""

    name = "sgd"

    def __init__(self, lr: float = 1e-2, momentum: float = 0.0, clip_norm: float | None = None):
        super().__init__(lr, clip_norm)
        if not 0 <= momentum < 1:
            raise DiffsimError(f"must be in [0, 1), got {momentum}", where="optimizer.momentum")
        self.momentum = float(momentum)

    def reset(self, n):
        self.m = np.zeros(n)

    def update(self, u, g):
        self.m = self.momentum * self.m + self.clip(g)
        return u - self.lr * self.m


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with bias correction."""

    name = "adam"

    def __init__(
        self, lr: float = 1e-2, betas=(0.9, 0.999), eps: float = 1e-8, clip_norm: float | None = None
    ):
        super().__init__(lr, clip_norm)
        self.b1, self.b2 = betas
        self.eps = eps

    def reset(self, n):
        self.m = np.zeros(n)
        self.v = np.zeros(n)
        self.t = 0

    def update(self, u, g):
        g = self.clip(g)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        mhat = self.m / (1 - self.b1**self.t)
        vhat = self.v / (1 - self.b2**self.t)
        return u - self.lr * mhat / (np.sqrt(vhat) + self.eps)


class LBFGSB(Optimizer):
    """scipy's L-BFGS-B: quasi-Newton with bounds, for smooth problems such as system identification."""

    name = "lbfgs"
    first_order = False

    def __init__(self, memory: int = 10, lr: float = 1.0, clip_norm: float | None = None):
        super().__init__(lr, clip_norm)
        self.memory = memory


def make_optimizer(name: str, lr: float | None = None, **kw) -> Optimizer:
    name = name.lower()
    table = {"adam": Adam, "sgd": SGD, "lbfgs": LBFGSB, "lbfgsb": LBFGSB, "l-bfgs-b": LBFGSB}
    if name not in table:
        raise DiffsimError(f"unknown optimizer {name!r}; choose adam, sgd or lbfgs", where="optimizer")
    if lr is not None:
        kw["lr"] = lr
    return table[name](**kw)


#: rejected evaluations in a row that stop a fit (stopped="unstable")
MAX_REJECTIONS = 10


def rejected_loss(best: float, last: float, predicted: float) -> float:
    """The loss L-BFGS-B sees at a rejected point (with a zero gradient): best + |best| (twice the best loss when it
    is positive) plus |predicted|, the change the gradient at the best point predicts for the step there, and no
    lower than the last accepted loss, so the line search never takes the point for progress.

    Measured with scipy 1.17 on a quadratic whose first trial step lands past a cliff (`tests/optim/`): inf, 1e30 or
    1e300 there made the line search's cubic interpolation return the start point and scipy stop ("relative
    reduction of f"), NaN made it extrapolate without end ("abnormal termination"); best + |best| backtracked to a
    quarter of the step, and adding |predicted| to a tenth, whatever the loss's scale, then went on to the minimum.
    (The cloth_sysid scene fitting six parameters, two of them dampings without a log transform: a first trial step
    a thousand times too long came back to stable ground in four rejections.)"""
    return max(best + abs(best) + abs(predicted), last)


@dataclass
class FitResult:
    """params: name -> best value (lists). history: one record per evaluation (iteration, loss, grad_norm,
    forward_s, backward_s, wall_time_s, status "ok" or "rejected", cause: why it was rejected, else ""); a rejected
    evaluation's loss is NaN when the rollout failed. best_iteration: the history index of best_loss. final_loss: the
    loss of the last accepted evaluation. message: why the fit stopped when it did not finish normally."""

    params: dict
    best_loss: float
    final_loss: float
    history: list = field(default_factory=list)
    iterations: int = 0
    wall_time_s: float = 0.0
    stopped: str = "iterations"
    best_iteration: int | None = None
    rejected: int = 0
    message: str = ""

    @property
    def loss_history(self) -> list[float]:
        return [h["loss"] for h in self.history]


def fit(
    sim,
    names=None,
    optimizer: Optimizer | str = "adam",
    iters: int = 100,
    tol: float | None = None,
    patience: int = 3,
    callback=None,
    progress: bool = True,
    resume: str | None = None,
    restore_best: bool = True,
    lr: float | None = None,
    max_rejections: int = MAX_REJECTIONS,
) -> FitResult:
    """Minimise the simulation's loss over the named parameters (by default every one that has a gradient).

    tol: stop when the loss falls below `tol`, or changes by less than tol * max(1, |loss|) for `patience`
        iterations in a row. callback(iteration, record, sim) may return True to stop.
    resume: a JSON file of parameter values (as written by `ParameterSet.save` or `diffsim optimize`) to start from.
    restore_best: leave the parameters at the best values seen (else at the last accepted ones).
    max_rejections: stop with stopped="unstable" after this many rejected evaluations in a row (see the module's
        docstring: an evaluation whose rollout, loss or gradient is not finite is rejected, the fit steps back).
    Every evaluation counts towards `iters`, rejected ones included.
    """
    if sim.loss is None:
        raise DiffsimError("fit() needs a simulation with a loss")
    if isinstance(optimizer, str):
        optimizer = make_optimizer(optimizer, lr)
    pset = sim.system.params
    selected = [p.name for p in pset.with_grad(names)]
    if not selected:
        raise DiffsimError("no parameters to fit", where="fit")
    if resume:
        pset.load(resume)
    u = pset.get_flat(selected)
    history: list[dict] = []
    best = {"loss": math.inf, "u": u.copy(), "iteration": None, "g": None}
    last = {"loss": math.nan, "u": u.copy()}  # the last accepted evaluation
    failures = {"row": 0, "total": 0, "cause": ""}
    start = time.perf_counter()
    bar = _progress(iters, progress)

    def evaluate(u_: np.ndarray) -> tuple[float, np.ndarray | None, str]:
        """(loss, gradient, cause): cause is "" for an accepted evaluation, else why it was rejected (the gradient
        is then None). The first evaluation raises instead: there is no accepted point to go back to."""
        t0 = time.perf_counter()
        loss, g, cause = math.nan, None, ""
        t1 = None
        try:
            try:
                with np.errstate(over="ignore", under="ignore"):
                    pset.set_flat(selected, u_)
            except DiffsimError as e:  # the step left a parameter's range (a log transform's overflow)
                raise _Invalid(f"the trial step left a parameter's range: {e}") from e
            loss = sim.forward()
            t1 = time.perf_counter()
            if not math.isfinite(loss):
                raise SimulationError("loss", sim.steps, "the loss is not finite")
            sim.backward()
            g = pset.grad_flat(selected)
            if not np.all(np.isfinite(g)):
                bad = _first_nonfinite_param(pset, selected)
                raise SimulationError("gradient", sim.steps, f"of {bad}")
        except (SimulationError, _Invalid) as e:
            if not history:  # the starting point: the error as it is, nothing to go back to
                if isinstance(e, _Invalid):
                    raise e.__cause__ from None
                raise
            cause, g = str(e), None
            if math.isfinite(loss):  # the gradient failed: the loss goes in the cause, the record's is NaN
                cause, loss = f"{cause}; the loss was {loss:.6g}", math.nan
        t2 = time.perf_counter()
        t1 = t2 if t1 is None else t1  # the forward pass failed
        rec = {
            "iteration": len(history),
            "loss": loss,
            "grad_norm": float(np.linalg.norm(g)) if g is not None else math.nan,
            "forward_s": t1 - t0,
            "backward_s": t2 - t1,
            "wall_time_s": time.perf_counter() - start,
            "status": "rejected" if cause else "ok",
            "cause": cause,
        }
        history.append(rec)
        if cause:
            failures["row"] += 1
            failures["total"] += 1
            failures["cause"] = cause
        else:
            failures["row"] = 0
            last.update(loss=loss, u=np.array(u_, copy=True))
            if loss < best["loss"]:
                best.update(loss=loss, u=np.array(u_, copy=True), iteration=rec["iteration"], g=g)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.5g}" if not cause else "rejected")
        return loss, g, cause

    def unstable() -> str:
        return (
            f"{failures['row']} evaluations in a row were rejected, the last at iteration {len(history) - 1}: "
            f"{failures['cause']}"
        )

    stopped = "iterations"
    message = ""
    try:
        if optimizer.first_order:
            optimizer.reset(u.size)
            quiet = 0
            prev = None
            scale = 1.0  # the step's scale: halved on every rejected evaluation
            accepted_u, accepted_g, opt_before = u, None, None
            for it in range(iters):
                loss, g, cause = evaluate(u)
                if callback is not None and callback(it, history[-1], sim):
                    stopped = "callback"
                    break
                if cause:
                    if failures["row"] >= max_rejections:
                        stopped, message = "unstable", unstable()
                        break
                    # back to the last accepted iterate and the optimizer's state before the failed update
                    scale *= 0.5
                    optimizer.__dict__.update(copy.deepcopy(opt_before))
                else:
                    # as set_flat left it: projected onto plain bounds
                    accepted_u, accepted_g = pset.get_flat(selected), g
                    if tol is not None:
                        if loss < tol:
                            stopped = "tolerance"
                            break
                        quiet = (
                            quiet + 1
                            if prev is not None and abs(prev - loss) < tol * max(1.0, abs(loss))
                            else 0
                        )
                        if quiet >= patience:
                            stopped = "converged"
                            break
                    prev = loss
                if it < iters - 1:
                    opt_before = copy.deepcopy(optimizer.__dict__)
                    u = optimizer.update(accepted_u, accepted_g)  # evaluate() projects it onto plain bounds
                    if scale != 1.0:
                        u = accepted_u + scale * (u - accepted_u)
        else:
            from scipy.optimize import minimize

            class _Stop(Exception):
                pass

            # scipy's stopping tests are absolute for losses below 1, so it sees the loss divided by the first
            # one: `tol` (default 1e-12) is then relative to the starting loss, whatever the loss's units.
            scale = {}

            def fun(x):
                loss, g, cause = evaluate(x)
                if callback is not None and callback(len(history) - 1, history[-1], sim):
                    raise _Stop("callback")
                if cause and failures["row"] >= max_rejections:
                    raise _Stop("unstable")
                if len(history) >= iters:
                    raise _Stop("iterations")
                if "s" not in scale:
                    scale["s"] = 1.0 / max(abs(loss), 1e-300)
                if cause:  # a plateau above the best point: the line search backtracks (see rejected_loss)
                    predicted = float(best["g"] @ (x - best["u"]))
                    return rejected_loss(best["loss"], last["loss"], predicted) * scale["s"], np.zeros_like(x)
                return loss * scale["s"], g * scale["s"]

            try:
                res = minimize(
                    fun,
                    u,
                    jac=True,
                    method="L-BFGS-B",
                    bounds=pset.flat_bounds(selected),
                    options={
                        "maxiter": iters,
                        "maxfun": iters,
                        "maxcor": optimizer.memory,
                        "ftol": tol if tol is not None else 1e-12,
                        "gtol": 1e-14,
                    },
                )
                stopped = "converged" if res.success else "iterations"
                if not res.success and failures["row"]:  # scipy's line search gave up on rejected points
                    stopped, message = "unstable", unstable()
            except _Stop as why:
                stopped = str(why)
                if stopped == "unstable":
                    message = unstable()
    finally:
        if bar is not None:
            bar.close()
    # never leave the parameters at a rejected point
    pset.set_flat(selected, best["u"] if restore_best or stopped == "unstable" else last["u"])
    return FitResult(
        params=pset.to_dict(selected),
        best_loss=best["loss"],
        final_loss=last["loss"],
        history=history,
        iterations=len(history),
        wall_time_s=time.perf_counter() - start,
        stopped=stopped,
        best_iteration=best["iteration"],
        rejected=failures["total"],
        message=message,
    )


class _Invalid(Exception):
    """A trial point outside a parameter's range: rejected like a rollout that failed."""


def _first_nonfinite_param(pset, names) -> str:
    for p in pset.select(names):
        if not np.all(np.isfinite(p.grad())):
            return p.name
    return "?"


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="fit", unit="it", leave=False)
