"""CMA-ES (the `cma` package, extra ``diffsim[scale]``): a gradient-free search, optionally polished by L-BFGS-B.

Where the loss is rough (contact events that switch on and off, chaotic rollouts) a gradient says little about
where the minimum lies. CMA-ES (Hansen, "The CMA Evolution Strategy: A Tutorial", 2016) samples a population of
points from a Gaussian, ranks them by their loss alone and moves the Gaussian towards the better ones, adapting its
covariance: it needs only forward rollouts. A few gradient steps from its best point (L-BFGS-B, `polish`) then reach
the bottom of the basin it found.

The search runs in the same unconstrained coordinates as every other optimizer (`ParameterSet.get_flat`): a log
transform makes the step sizes relative, a sigmoid keeps a bounded parameter inside its range, and plain bounds are
given to CMA-ES itself (its boundary handling). The initial step size of each coordinate is `sigma` times its range:
hi - lo for plain bounds, 8 for a sigmoid (the logits that span 2 % to 98 % of the range), else max(1, |u|).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..errors import DiffsimError, SimulationError
from .fit import FitResult, Optimizer


def _require_cma():
    try:
        import cma  # noqa: PLC0415
    except ImportError:
        raise DiffsimError(
            "the cma optimizer needs the cma package: pip install 'diffsim[scale]'", where="optimizer"
        ) from None
    return cma


class CMAES(Optimizer):
    """CMA-ES over the fitted parameters; `iters` counts loss evaluations (forward rollouts), the polish's
    included. sigma: the initial step, relative to each coordinate's range (see the module's docstring).
    popsize: points per generation (None: CMA-ES's default, 4 + 3 ln n). polish: L-BFGS-B evaluations from the
    best point found (0: none). seed: the sampler's seed (a fit is reproducible)."""

    name = "cma"
    first_order = False
    gradient_free = True

    def __init__(
        self, sigma: float = 0.25, popsize: int | None = None, polish: int = 0, seed: int = 1, lr: float = 1.0
    ):
        super().__init__(lr)
        _require_cma()  # a missing package fails when the fit is set up, not after the scene is built
        if not (sigma > 0 and math.isfinite(sigma)):
            raise DiffsimError(f"must be > 0, got {sigma}", where="optimizer.sigma")
        if popsize is not None and popsize < 2:
            raise DiffsimError(f"must be >= 2, got {popsize}", where="optimizer.popsize")
        if polish < 0:
            raise DiffsimError(f"must be >= 0, got {polish}", where="optimizer.polish")
        self.sigma = float(sigma)
        self.popsize = popsize
        self.polish = int(polish)
        self.seed = int(seed)

    def config(self) -> dict:
        return {
            "name": self.name, "sigma": self.sigma, "popsize": self.popsize, "polish": self.polish,
            "seed": self.seed,
        }  # fmt: skip

    def minimize(
        self, sim, selected: list[str], iters: int, tol: float | None, patience: int, callback, progress: bool,
        restore_best: bool,
    ) -> FitResult:  # fmt: skip
        """Search, then polish; the parameters are left at the best point (the polish's, when it improves)."""
        cma = _require_cma()
        pset = sim.system.params
        u0 = pset.get_flat(selected)
        search_budget = max(1, iters - self.polish) if self.polish else iters
        stds = self._initial_steps(pset, selected, u0)
        lo, hi = _cma_bounds(pset.flat_bounds(selected))
        opts = {
            "bounds": [lo, hi],
            "CMA_stds": stds,
            "seed": self.seed,
            "verbose": -9,
            "maxfevals": search_budget,
            "tolfun": 0.0 if tol is None else tol,
            "tolx": 1e-12,
            # a generation of equal losses (every shot misses: a flat loss) widens the search instead of ending it
            "tolflatfitness": 10**9,
        }
        if self.popsize is not None:
            opts["popsize"] = self.popsize
        es = cma.CMAEvolutionStrategy(np.clip(u0, lo, hi).tolist(), 1.0, opts)
        history: list[dict] = []
        best = {"loss": math.inf, "u": u0.copy(), "iteration": None}
        start = time.perf_counter()
        stopped = None
        bar = _progress(iters, progress)
        try:
            while stopped is None and len(history) < search_budget:
                points = es.ask()
                points = points[: search_budget - len(history)]
                losses = [
                    self._evaluate(sim, pset, selected, np.asarray(x), history, best, start) for x in points
                ]
                if bar is not None:
                    bar.update(len(points))
                    bar.set_postfix(loss=f"{best['loss']:.5g}")
                if callback is not None and any(
                    callback(r["iteration"], r, sim) for r in history[-len(points) :]
                ):
                    stopped = "callback"
                elif tol is not None and best["loss"] < tol:
                    stopped = "tolerance"
                if len(points) < es.popsize:  # the budget ends within a generation
                    break
                finite = [v for v in losses if math.isfinite(v)]
                worst = max(finite) if finite else 1.0
                # a rejected point ranks below every accepted one (CMA-ES uses only the ranking)
                es.tell(points, [v if math.isfinite(v) else worst + abs(worst) + 1.0 for v in losses])
                if es.stop() and stopped is None:
                    stopped = "converged"
        finally:
            if bar is not None:
                bar.close()
        if not math.isfinite(best["loss"]):
            raise SimulationError("loss", sim.steps, "every CMA-ES point failed")
        pset.set_flat(selected, best["u"])
        result = FitResult(
            params=pset.to_dict(selected),
            best_loss=best["loss"],
            final_loss=best["loss"],
            history=history,
            iterations=len(history),
            wall_time_s=time.perf_counter() - start,
            stopped=stopped or "iterations",
            best_iteration=best["iteration"],
            rejected=sum(r["status"] == "rejected" for r in history),
        )
        if self.polish and stopped not in ("callback", "tolerance"):
            result = self._polish(sim, selected, result, tol, patience, progress, restore_best, start)
        return result

    def _polish(
        self, sim, selected, search: FitResult, tol, patience, progress, restore_best, start
    ) -> FitResult:
        """L-BFGS-B from the search's best point; one history, the polish's iterations numbered on."""
        from .fit import LBFGSB, fit  # noqa: PLC0415

        polish = fit(
            sim, selected, LBFGSB(), iters=self.polish, tol=tol, patience=patience, progress=progress,
            restore_best=restore_best,
        )  # fmt: skip
        offset = len(search.history)
        history = search.history + [
            {**r, "iteration": r["iteration"] + offset, "wall_time_s": r["wall_time_s"] + search.wall_time_s}
            for r in polish.history
        ]
        if polish.best_loss < search.best_loss:
            best_loss, best_iteration = polish.best_loss, polish.best_iteration + offset
        else:  # the polish did not improve: back to the search's best point
            best_loss, best_iteration = search.best_loss, search.best_iteration
            sim.system.params.load_dict(search.params)
        return FitResult(
            params=sim.system.params.to_dict(selected),
            best_loss=best_loss,
            final_loss=polish.final_loss,
            history=history,
            iterations=len(history),
            wall_time_s=time.perf_counter() - start,
            stopped=polish.stopped,
            best_iteration=best_iteration,
            rejected=search.rejected + polish.rejected,
            message=polish.message,
        )

    def _initial_steps(self, pset, selected, u0) -> list[float]:
        steps = []
        for p in pset.select(selected):
            lo, hi = p.unconstrained_bounds()
            for u in p.to_unconstrained(p.numpy()).ravel():
                if p.transform == "sigmoid":
                    span = 8.0
                elif lo is not None and hi is not None:
                    span = hi - lo
                else:
                    span = max(1.0, abs(float(u)))
                steps.append(self.sigma * span)
        return steps

    @staticmethod
    def _evaluate(sim, pset, selected, u, history, best, start) -> float:
        """The loss at u (a forward rollout), recorded in the history; NaN for a rejected point."""
        t0 = time.perf_counter()
        cause = ""
        try:
            with np.errstate(over="ignore", under="ignore"):
                pset.set_flat(selected, u)
            loss = sim.forward()
            if not math.isfinite(loss):
                raise SimulationError("loss", sim.steps, "the loss is not finite")
        except (SimulationError, DiffsimError) as e:
            loss, cause = math.nan, str(e)
        t1 = time.perf_counter()
        history.append({
            "iteration": len(history), "loss": loss, "grad_norm": math.nan, "forward_s": t1 - t0,
            "backward_s": 0.0, "wall_time_s": t1 - start, "status": "rejected" if cause else "ok", "cause": cause,
        })  # fmt: skip
        if not cause and loss < best["loss"]:
            best.update(loss=loss, u=pset.get_flat(selected), iteration=len(history) - 1)
        return loss


def _cma_bounds(bounds) -> tuple[list[float], list[float]]:
    """Per-coordinate lower and upper bounds for cma (inf where a side is open)."""
    lo = [-math.inf if b[0] is None else float(b[0]) for b in bounds]
    hi = [math.inf if b[1] is None else float(b[1]) for b in bounds]
    return lo, hi


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc="cma", unit="eval", leave=False)
