"""Optimizers and `fit()`.

Optimizers see a flat vector of *unconstrained* coordinates (`ParameterSet.get_flat`): each parameter's transform
(log, sigmoid) is applied in between, so positivity and ranges hold by construction. Parameters with plain bounds are
projected back into them after each first-order step; L-BFGS-B (scipy) honours them directly.
"""

from __future__ import annotations

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


@dataclass
class FitResult:
    params: dict  # name -> best value (lists)
    best_loss: float
    final_loss: float
    history: list = field(default_factory=list)  # per evaluation: iteration, loss, grad_norm, wall_time_s
    iterations: int = 0
    wall_time_s: float = 0.0
    stopped: str = "iterations"

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
) -> FitResult:
    """Minimise the simulation's loss over the named parameters (by default every one that has a gradient).

    tol: stop when the loss falls below `tol`, or changes by less than tol * max(1, |loss|) for `patience`
        iterations in a row. callback(iteration, record, sim) may return True to stop.
    resume: a JSON file of parameter values (as written by `ParameterSet.save` or `diffsim optimize`) to start from.
    restore_best: leave the parameters at the best values seen (else at the last).
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
    best = {"loss": math.inf, "u": u.copy()}
    start = time.perf_counter()
    bar = _progress(iters, progress)

    def evaluate(u_: np.ndarray) -> tuple[float, np.ndarray]:
        pset.set_flat(selected, u_)
        t0 = time.perf_counter()
        loss = sim.forward()
        t1 = time.perf_counter()
        sim.backward()
        g = pset.grad_flat(selected)
        t2 = time.perf_counter()
        if not np.all(np.isfinite(g)):
            bad = _first_nonfinite_param(pset, selected)
            raise SimulationError("gradient", sim.steps, f"of {bad}")
        rec = {
            "iteration": len(history),
            "loss": loss,
            "grad_norm": float(np.linalg.norm(g)),
            "forward_s": t1 - t0,
            "backward_s": t2 - t1,
            "wall_time_s": time.perf_counter() - start,
        }
        history.append(rec)
        if loss < best["loss"]:
            best.update(loss=loss, u=np.array(u_, copy=True))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.5g}")
        return loss, g

    stopped = "iterations"
    try:
        if optimizer.first_order:
            optimizer.reset(u.size)
            quiet = 0
            prev = None
            for it in range(iters):
                loss, g = evaluate(u)
                if callback is not None and callback(it, history[-1], sim):
                    stopped = "callback"
                    break
                if tol is not None:
                    if loss < tol:
                        stopped = "tolerance"
                        break
                    quiet = (
                        quiet + 1 if prev is not None and abs(prev - loss) < tol * max(1.0, abs(loss)) else 0
                    )
                    if quiet >= patience:
                        stopped = "converged"
                        break
                prev = loss
                if it < iters - 1:
                    u = optimizer.update(u, g)
                    pset.set_flat(selected, u)  # projection onto plain bounds happens in set_flat
                    u = pset.get_flat(selected)
        else:
            from scipy.optimize import minimize

            class _Stop(Exception):
                pass

            # scipy's stopping tests are absolute for losses below 1, so it sees the loss divided by the first
            # one: `tol` (default 1e-12) is then relative to the starting loss, whatever the loss's units.
            scale = {}

            def fun(x):
                loss, g = evaluate(x)
                if callback is not None and callback(len(history) - 1, history[-1], sim):
                    raise _Stop
                if len(history) >= iters:
                    raise _Stop
                if "s" not in scale:
                    scale["s"] = 1.0 / max(abs(loss), 1e-300)
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
            except _Stop:
                stopped = "iterations" if len(history) >= iters else "callback"
    finally:
        if bar is not None:
            bar.close()
    if restore_best:
        pset.set_flat(selected, best["u"])
    return FitResult(
        params=pset.to_dict(selected),
        best_loss=best["loss"],
        final_loss=history[-1]["loss"] if history else math.nan,
        history=history,
        iterations=len(history),
        wall_time_s=time.perf_counter() - start,
        stopped=stopped,
    )


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
