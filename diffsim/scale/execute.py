"""Running a sweep's trials: one after the other in this process, or as Ray tasks.

Ray (extra ``diffsim[scale]``): each trial is a task in a worker process of its own, so each worker has its own
Taichi runtime (Taichi keeps one per process); workers on one machine share Taichi's on-disk kernel cache, so a
kernel compiled by one is loaded by the others. A task asks Ray for `cpus_per_worker` CPUs (and `gpus_per_worker`
GPUs): Ray runs as many at once as its nodes' resources allow, and Taichi's CPU backend in the worker uses that
many threads. A worker process that dies (killed, out of memory) loses only the trial it was running: Ray runs that
task again, up to `MAX_RETRIES` times, in a fresh worker.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import DiffsimError
from .trial import run_trial

#: times Ray runs a trial again whose worker died
MAX_RETRIES = 3


def ray_available() -> bool:
    try:
        import ray  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def run_serial(specs: list[dict], on_result: Callable[[dict], None]) -> None:
    """Each trial in this process, in order."""
    for spec in specs:
        on_result(run_trial(spec))


def _ray_trial(spec: dict) -> dict:
    """A Ray task: one trial in this worker process, Taichi limited to the CPUs Ray gave the task."""
    import ray  # noqa: PLC0415

    assigned = ray.get_runtime_context().get_assigned_resources()
    os.environ["TI_CPU_MAX_NUM_THREADS"] = str(max(1, int(assigned.get("CPU", 1))))  # read by ti.init
    if assigned.get("GPU", 0) > 0 and spec["arch"] is None:  # a GPU from Ray: the trial runs on it
        spec = {**spec, "arch": "gpu"}
    return run_trial(spec)


def run_ray(
    specs: list[dict],
    on_result: Callable[[dict], None],
    *,
    workers: int | None,
    address: str | None,
    cpus_per_worker: float = 1,
    gpus_per_worker: float = 0,
    say: Callable[[str], None] = print,
) -> None:
    """The trials as Ray tasks; `on_result(row)` in this process as each one ends (in the order they end).

    address: a cluster to join (``HOST:PORT`` of its head, or "auto"); None: ``RAY_ADDRESS`` if set, else a
    local Ray instance with `workers` CPUs (default: this machine's), started here and stopped at the end."""
    import ray  # noqa: PLC0415

    address = address or os.environ.get("RAY_ADDRESS") or None
    started = not ray.is_initialized()
    if started:
        kwargs = {"include_dashboard": False, "logging_level": "warning", "log_to_driver": False}
        if address is None:
            kwargs["num_cpus"] = int(workers * cpus_per_worker) if workers else os.cpu_count()
            if gpus_per_worker:
                kwargs["num_gpus"] = max(1, int(round((workers or 1) * gpus_per_worker)))
        try:
            # "local": a new instance, not a cluster that `ray start` left in /tmp/ray/ray_current_cluster
            ray.init(address=address or "local", **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise DiffsimError(
                f"cannot start or join Ray: {' '.join(str(e).split())}", where="--address"
            ) from None
    try:
        total = ray.cluster_resources()
        say(
            f"ray: {'joined ' + address if address else 'local instance'}, {total.get('CPU', 0):g} CPUs, "
            f"{total.get('GPU', 0):g} GPUs, {len(ray.nodes())} node(s)"
        )
        task = ray.remote(
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker,
            max_retries=MAX_RETRIES,
            retry_exceptions=False,
        )(_ray_trial)
        pending = {task.remote(spec): spec for spec in specs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                spec = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as e:  # its worker died MAX_RETRIES + 1 times
                    row = _failed_row(spec, e)
                on_result(row)
    finally:
        if started:
            ray.shutdown()


def _failed_row(spec: dict, error: Exception) -> dict:
    import math  # noqa: PLC0415

    text = " ".join(str(error).split())
    return {
        "index": spec["index"], **{f"values.{k}": v for k, v in spec["values"].items()}, "status": "error",
        "final_loss": math.nan, "best_loss": math.nan, "iterations": 0, "wall_time_s": math.nan,
        "folder": spec["folder"], "stopped": "", "seed": spec["seed"], "worker": "", "error": text[:500],
    }  # fmt: skip
