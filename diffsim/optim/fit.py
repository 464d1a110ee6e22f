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
search then backtracks (an infinite or huge loss would make its cubic interpolation step back to the start point, and
scipy end the fit there: see `rejected_loss`). `max_rejections` rejected evaluations in a row stop the fit with
stopped="unstable" and the best iterate restored; a rejected first evaluation (the starting point) raises, as there
is nothing to go back to. A checkpoint holds this state too (the step's scale, the rejection counts, the history with
its rejected evaluations), so a resumed fit rejects and retries as the uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

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

    def config(self) -> dict:
        """The settings (name and hyperparameters) a checkpoint records; resuming requires the same."""
        return {"name": self.name, "lr": self.lr, "clip_norm": self.clip_norm}

    def state(self) -> dict:
        """The state an update depends on besides (u, g): copies of arrays, plain numbers."""
        return {}

    def load_state(self, state: dict) -> None:
        pass


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

    def config(self):
        return {**super().config(), "momentum": self.momentum}

    def state(self):
        return {"m": self.m.copy()}

    def load_state(self, state):
        self.m = np.array(state["m"], dtype=np.float64)


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

    def config(self):
        return {**super().config(), "betas": [self.b1, self.b2], "eps": self.eps}

    def state(self):
        return {"m": self.m.copy(), "v": self.v.copy(), "t": self.t}

    def load_state(self, state):
        self.m = np.array(state["m"], dtype=np.float64)
        self.v = np.array(state["v"], dtype=np.float64)
        self.t = int(state["t"])


class LBFGSB(Optimizer):
    """scipy's L-BFGS-B: quasi-Newton with bounds, for smooth problems such as system identification."""

    name = "lbfgs"
    first_order = False

    def __init__(self, memory: int = 10, lr: float = 1.0, clip_norm: float | None = None):
        super().__init__(lr, clip_norm)
        self.memory = memory

    def config(self):
        return {**super().config(), "memory": self.memory}


def make_optimizer(name: str, lr: float | None = None, **kw) -> Optimizer:
    name = name.lower()
    table = {"adam": Adam, "sgd": SGD, "lbfgs": LBFGSB, "lbfgsb": LBFGSB, "l-bfgs-b": LBFGSB}
    if name == "cma":  # gradient-free (the cma package, an optional extra)
        from .cma import CMAES  # noqa: PLC0415

        table["cma"] = CMAES
    if name not in table:
        raise DiffsimError(f"unknown optimizer {name!r}; choose adam, sgd, lbfgs or cma", where="optimizer")
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
    resume: str | os.PathLike | None = None,
    restore_best: bool = True,
    lr: float | None = None,
    max_rejections: int = MAX_REJECTIONS,
    checkpoint: str | os.PathLike | None = None,
    save_every: int | None = None,
    checkpoint_extra: dict | None = None,
    checkpoint_arrays=None,
) -> FitResult:
    """Minimise the simulation's loss over the named parameters (by default every one that has a gradient).

    tol: stop when the loss falls below `tol`, or changes by less than tol * max(1, |loss|) for `patience`
        iterations in a row. callback(iteration, record, sim) may return True to stop.
    checkpoint: a file (``.npz``) that holds the whole state of the fit: the last accepted iterate and its gradient,
        the optimizer's state (Adam's m, v, t; SGD's momentum), the step's scale and the rejection counts, the
        history (rejected evaluations included), the best loss and iterate. It is written atomically before the
        first iteration, after every `save_every` iterations (None: after an iteration that ends SAVE_INTERVAL_S or
        more after the last write), when the fit ends, and when it is interrupted (KeyboardInterrupt or any other
        exception: the state after the last finished iteration). `checkpoint_extra`: JSON-able data stored with it
        (`read_checkpoint(path)["extra"]`); `checkpoint_arrays()`: called at each write, a dict of name to numpy
        array stored too (`read_checkpoint(path)["arrays"]`).
    resume: a checkpoint (or a folder holding ``checkpoint.npz``) to continue from: Adam and SGD take the same
        iterates as an uninterrupted fit, rejected steps and their retries included; `iters` counts the iterations
        already done. The names, sizes and optimizer settings must be those of the checkpoint. L-BFGS-B cannot be
        continued exactly (scipy keeps its state private): it restarts from the best iterate, with a warning. A
        checkpoint of a fit that stopped early (tolerance, convergence, callback, unstable) resumes to its result.
        A JSON file of parameter values (as written by `ParameterSet.save` or `diffsim optimize`) instead sets the
        starting values.
    restore_best: leave the parameters at the best values seen (else at the last accepted ones).
    max_rejections: stop with stopped="unstable" after this many rejected evaluations in a row (see the module's
        docstring: an evaluation whose rollout, loss or gradient is not finite is rejected, the fit steps back).
    Every evaluation counts towards `iters`, rejected ones included.
    """
    if sim.loss is None:
        raise DiffsimError("fit() needs a simulation with a loss")
    if isinstance(optimizer, str):
        optimizer = make_optimizer(optimizer, lr)
    if save_every is not None and not (isinstance(save_every, int) and save_every >= 1):
        raise DiffsimError(f"must be an integer >= 1, got {save_every!r}", where="fit: save_every")
    pset = sim.system.params
    selected = [p.name for p in pset.with_grad(names)]
    if not selected:
        raise DiffsimError("no parameters to fit", where="fit")
    if getattr(optimizer, "gradient_free", False):  # CMA-ES (optim/cma.py): no checkpoint, not resumable
        if resume:
            raise DiffsimError(f"a {optimizer.name} fit cannot be resumed", where="fit: resume")
        return optimizer.minimize(sim, selected, iters, tol, patience, callback, progress, restore_best)
    saved = None
    if resume:
        resume_path = checkpoint_file(resume)
        if Path(resume).is_dir() and not resume_path.exists():
            raise DiffsimError(f"no {CHECKPOINT_NAME} in this folder", where=str(resume))
        if is_checkpoint(resume_path):
            saved = read_checkpoint(resume_path)
            _check_resumable(saved, resume_path, pset, selected, optimizer)
        else:
            pset.load(str(resume))
    u = pset.get_flat(selected)
    history: list[dict] = []
    # the best accepted evaluation: its loss, point, history index and gradient (L-BFGS-B's rejected_loss needs it)
    best = {"loss": math.inf, "u": u.copy(), "iteration": None, "g": None}
    # the fit after its last finished iteration: u, the last accepted iterate (evaluated when g is not None), g, its
    # gradient, the optimizer's state before the update that u and g make; the tolerance test's counters (prev: the
    # last accepted loss); the step's scale (halved at each rejection), the rejections in a row and in all, and the
    # last rejection's cause
    run = {
        "u": u, "g": None, "prev": None, "quiet": 0, "stopped": None,
        "step_scale": 1.0, "in_a_row": 0, "rejected": 0, "last_cause": "",
    }  # fmt: skip
    elapsed0 = 0.0
    if saved is not None:
        history = list(saved["history"])
        best = {k: saved[f"best_{k}"] for k in best}
        # a fit that ran out of iterations continues when given more; one stopped by a test stays stopped
        stopped = None if saved["stopped"] == "iterations" else saved["stopped"]
        run.update({k: saved[k] for k in run}, stopped=stopped)
        elapsed0 = saved["elapsed_s"]
    start = time.perf_counter() - elapsed0
    snapshot: dict = {}  # "last": the state as a checkpoint stores it, replaced whole (an interrupt leaves the old one)

    def take_snapshot() -> None:
        snapshot["last"] = dict(
            names=selected,
            optimizer=optimizer.config(),
            opt_state=optimizer.state() if optimizer.first_order else {},
            history=list(history),
            **{f"best_{k}": v for k, v in best.items()},
            elapsed_s=time.perf_counter() - start,
            **run,
        )

    last_write = [time.perf_counter()]

    def save() -> None:
        if checkpoint is not None and snapshot:
            arrays = checkpoint_arrays() if checkpoint_arrays is not None else {}
            _write_checkpoint(checkpoint, snapshot["last"], checkpoint_extra, arrays)
            last_write[0] = time.perf_counter()

    def save_due(done: int) -> bool:
        """Whether to write after `done` iterations in all."""
        if save_every is not None:
            return done % save_every == 0
        return time.perf_counter() - last_write[0] >= SAVE_INTERVAL_S

    bar = _progress(max(0, iters - len(history)), progress)

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
            run["in_a_row"] += 1
            run["rejected"] += 1
            run["last_cause"] = cause
        else:
            run["in_a_row"] = 0
            if loss < best["loss"]:
                best.update(loss=loss, u=np.array(u_, copy=True), iteration=rec["iteration"], g=g)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.5g}" if not cause else "rejected")
        return loss, g, cause

    def stop_test(cause: str) -> str | None:
        """After an evaluation: "callback" when the callback asks to stop, "unstable" after `max_rejections`
        rejections in a row, else None."""
        if callback is not None and callback(len(history) - 1, history[-1], sim):
            return "callback"
        if cause and run["in_a_row"] >= max_rejections:
            return "unstable"
        return None

    try:
        if optimizer.first_order:
            optimizer.reset(u.size)
            if saved is not None:
                optimizer.load_state(saved["opt_state"])
            take_snapshot()
            if saved is None:
                save()
            for it in range(len(history), iters if run["stopped"] is None else 0):
                before = optimizer.state()
                trial = run["u"]
                if run["g"] is not None:  # the last accepted evaluation's update, scaled after rejections
                    trial = optimizer.update(run["u"], run["g"])  # evaluate() projects it onto plain bounds
                    if run["step_scale"] != 1.0:
                        trial = run["u"] + run["step_scale"] * (trial - run["u"])
                loss, g, cause = evaluate(trial)
                if cause:  # back to the last accepted iterate and the optimizer's state before the update
                    optimizer.load_state(before)
                    run["step_scale"] *= 0.5
                stopped = stop_test(cause)
                if stopped is None and not cause and tol is not None:
                    if loss < tol:
                        stopped = "tolerance"
                    else:
                        prev = run["prev"]
                        close = prev is not None and abs(prev - loss) < tol * max(1.0, abs(loss))
                        run["quiet"] = run["quiet"] + 1 if close else 0
                        if run["quiet"] >= patience:
                            stopped = "converged"
                if not cause:  # as set_flat left it: projected onto plain bounds
                    run.update(u=pset.get_flat(selected), g=g, prev=loss)
                run["stopped"] = stopped
                take_snapshot()
                if stopped is not None:
                    break
                if save_due(it + 1):
                    save()
            stopped = run["stopped"] or "iterations"
        else:
            stopped = _minimize_lbfgsb(
                evaluate, stop_test, run, best, saved is not None, pset, selected, optimizer, iters, tol, history,
                take_snapshot, save, save_due,
            )  # fmt: skip
    except BaseException:
        save()  # the state after the last finished iteration
        raise
    finally:
        if bar is not None:
            bar.close()
    run["stopped"] = stopped
    take_snapshot()
    save()
    # never leave the parameters at a rejected point
    pset.set_flat(selected, best["u"] if restore_best or stopped == "unstable" else run["u"])
    return FitResult(
        params=pset.to_dict(selected),
        best_loss=best["loss"],
        final_loss=run["prev"] if run["prev"] is not None else math.nan,
        history=history,
        iterations=len(history),
        wall_time_s=time.perf_counter() - start,
        stopped=stopped,
        best_iteration=best["iteration"],
        rejected=run["rejected"],
        message=_unstable_message(history, run) if stopped == "unstable" else "",
    )


def _unstable_message(history: list[dict], run: dict) -> str:
    """Why a fit stopped unstable: the rejections in a row and the last one's cause."""
    return (
        f"{run['in_a_row']} evaluations in a row were rejected, the last at iteration {len(history) - 1}: "
        f"{run['last_cause']}"
    )


def _minimize_lbfgsb(
    evaluate, stop_test, run, best, resumed, pset, selected, optimizer, iters, tol, history, take_snapshot, save,
    save_due,
) -> str:  # fmt: skip
    """scipy's L-BFGS-B from the start (a resumed fit: from the best iterate); returns why it stopped. Its state is
    scipy's own: a checkpoint holds the history and the best iterate, from which a resumed fit restarts."""
    from scipy.optimize import minimize

    class _Stop(Exception):
        pass

    if resumed:
        if run["stopped"] is not None:
            return run["stopped"]
        if len(history) < iters:
            warnings.warn(
                "L-BFGS-B cannot be continued exactly (scipy keeps its curvature pairs private): it restarts from "
                f"the best iterate after {len(history)} evaluations",
                stacklevel=3,
            )
    take_snapshot()
    if not resumed:
        save()
    if len(history) >= iters:
        return "iterations"
    # scipy's stopping tests are absolute for losses below 1, so it sees the loss divided by the first one's (the
    # best loss after it): `tol` (default 1e-12) is then relative to the starting loss, whatever the loss's units.
    scale = {}
    budget = iters - len(history)

    def fun(x):
        loss, g, cause = evaluate(x)
        if not cause:
            run.update(u=np.array(x, copy=True), g=g, prev=loss)
        run["stopped"] = stop_test(cause)
        take_snapshot()
        if save_due(len(history)):
            save()
        if run["stopped"] is not None or len(history) >= iters:
            raise _Stop
        if "s" not in scale:
            scale["s"] = 1.0 / max(abs(best["loss"]), 1e-300)
        if cause:  # a plateau above the best point: the line search backtracks (see rejected_loss)
            predicted = float(best["g"] @ (x - best["u"]))
            return rejected_loss(best["loss"], run["prev"], predicted) * scale["s"], np.zeros_like(x)
        return loss * scale["s"], g * scale["s"]

    try:
        res = minimize(
            fun,
            best["u"] if resumed else run["u"],
            jac=True,
            method="L-BFGS-B",
            bounds=pset.flat_bounds(selected),
            options={
                "maxiter": budget,
                "maxfun": budget,
                "maxcor": optimizer.memory,
                "ftol": tol if tol is not None else 1e-12,
                "gtol": 1e-14,
            },
        )
        if res.success:
            run["stopped"] = "converged"
        elif run["in_a_row"]:  # scipy's line search gave up on rejected points
            run["stopped"] = "unstable"
    except _Stop:
        pass
    return run["stopped"] or "iterations"


# -- checkpoints ------------------------------------------------------------------------------------------------

#: with save_every=None, a checkpoint is written after an iteration that ends this long after the last write (s): a
#: write costs a few milliseconds (measured 4-8 ms on a loaded 2-core machine, most of it the rename), as much as a
#: small fit's iteration
SAVE_INTERVAL_S = 1.0

#: the name `diffsim optimize` gives the checkpoint in its output folder
CHECKPOINT_NAME = "checkpoint.npz"
_FORMAT = "diffsim-fit-checkpoint"
_VERSION = 2  # 2: the rejection state (step_scale, in_a_row, rejected, last_cause, best_iteration, best_g)
_ARRAYS = ("u", "g", "best_u", "best_g")


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The checkpoint a `resume=` argument names: the file itself, or ``checkpoint.npz`` in a folder."""
    p = Path(path)
    return p / CHECKPOINT_NAME if p.is_dir() else p


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a zip file (an ``.npz``, as checkpoints are) rather than, say, a JSON file of values."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _history_columns(history: list[dict]) -> dict | None:
    """The history as one array per key (numbers or strings, every record with the same keys), or None: an array
    is written in microseconds where JSON text of a long history takes milliseconds, at every checkpoint."""
    if not history:
        return {}
    keys = list(history[0])
    columns = {}
    for key in keys:
        values = [rec.get(key) for rec in history]
        if all(type(v) is int for v in values):
            columns[key] = np.asarray(values, dtype=np.int64)
        elif all(type(v) in (int, float) for v in values):
            columns[key] = np.asarray(values, dtype=np.float64)
        elif all(type(v) is str for v in values):  # status, cause
            columns[key] = np.asarray(values, dtype=np.str_)
        else:
            return None
    if any(len(rec) != len(keys) for rec in history):
        return None
    return columns


def _write_checkpoint(path, snap: dict, extra: dict | None, extra_arrays: dict) -> None:
    from diffsim.fileio import atomic_path  # noqa: PLC0415

    arrays = {k: np.asarray(snap[k], dtype=np.float64) for k in _ARRAYS if snap[k] is not None}
    opt_arrays = {k: v for k, v in snap["opt_state"].items() if isinstance(v, np.ndarray)}
    columns = _history_columns(snap["history"])
    arrays.update({f"history:{k}": v for k, v in (columns or {}).items()})
    arrays.update({f"extra:{k}": np.asarray(v) for k, v in extra_arrays.items()})
    meta = {
        "format": _FORMAT,
        "version": _VERSION,
        "names": snap["names"],
        "size": int(np.asarray(snap["u"]).size),
        "optimizer": snap["optimizer"],
        "opt_scalars": {k: v for k, v in snap["opt_state"].items() if k not in opt_arrays},
        "iterations": len(snap["history"]),
        "history": snap["history"] if columns is None else list(columns),
        "best_loss": snap["best_loss"],
        "best_iteration": snap["best_iteration"],
        "prev": snap["prev"],
        "quiet": snap["quiet"],
        "stopped": snap["stopped"],
        "step_scale": snap["step_scale"],
        "in_a_row": snap["in_a_row"],
        "rejected": snap["rejected"],
        "last_cause": snap["last_cause"],
        "elapsed_s": snap["elapsed_s"],
        "extra": extra or {},
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        text = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)  # UTF-8 (a numpy str would be UTF-32)
        np.savez(fh, meta=text, **arrays, **{f"opt_{k}": v for k, v in opt_arrays.items()})


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A fit checkpoint as a dict: ``u``, ``g`` (the last accepted iterate and its gradient, None before the first
    evaluation), ``prev`` (its loss), ``best_u``, ``best_loss``, ``best_iteration``, ``best_g``, ``history``
    (rejected evaluations included), ``names``, ``optimizer`` (its settings), ``opt_state``, ``iterations``,
    ``stopped`` (None while the fit runs), ``step_scale``, ``in_a_row``, ``rejected``, ``last_cause`` (the
    rejection state), ``extra`` (the caller's data), ... Raises `DiffsimError` naming the file if it is not one."""
    path = checkpoint_file(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes().decode())
            if meta.get("format") != _FORMAT:
                raise ValueError("no format mark")
            arrays = {k: data[k].copy() for k in data.files if k != "meta"}
    except FileNotFoundError:
        raise DiffsimError("file not found", where=str(path)) from None
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as e:
        raise DiffsimError(f"not a diffsim fit checkpoint ({_one_line(e)})", where=str(path)) from None
    if meta.get("version") != _VERSION:
        raise DiffsimError(
            f"checkpoint version {meta.get('version')!r}; this diffsim reads {_VERSION}", where=str(path)
        )
    out = dict(meta)
    if meta["history"] and isinstance(meta["history"][0], str):  # stored as columns
        columns = [arrays[f"history:{k}"].tolist() for k in meta["history"]]
        out["history"] = [dict(zip(meta["history"], row, strict=True)) for row in zip(*columns, strict=True)]
    for k in _ARRAYS:
        out[k] = arrays.get(k)
    out["arrays"] = {k[6:]: v for k, v in arrays.items() if k.startswith("extra:")}
    out["opt_state"] = {
        **meta["opt_scalars"],
        **{k[4:]: v for k, v in arrays.items() if k.startswith("opt_")},
    }
    return out


def _check_resumable(saved: dict, path, pset, selected: list[str], optimizer: Optimizer) -> None:
    where = str(path)
    if saved["names"] != selected:
        raise DiffsimError(
            f"the checkpoint fits {', '.join(saved['names'])}; this fit selects {', '.join(selected)}",
            where=f"{where}: names",
        )
    size = pset.get_flat(selected).size
    if saved["size"] != size:
        raise DiffsimError(
            f"the checkpoint has {saved['size']} values; this fit has {size}", where=f"{where}: size"
        )
    mine = json.loads(json.dumps(optimizer.config()))  # as the checkpoint stores it (tuples become lists)
    if saved["optimizer"] != mine:
        raise DiffsimError(
            f"written by {_settings(saved['optimizer'])}; resuming needs the same optimizer, got {_settings(mine)}",
            where=f"{where}: optimizer",
        )


def _settings(config: dict) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in config.items() if k != "name")
    return f"{config.get('name')}({rest})"


def _one_line(e) -> str:
    return " ".join(str(e).split())


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
