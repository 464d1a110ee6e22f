"""The peer runner's concurrent mode: both commands start together, each pinned to its own core, and the ratio is
per iteration (per step when the two ran different numbers of steps). The peers themselves are optional extras and
are not installed for the tests."""

import importlib.util
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_runner():
    spec = importlib.util.spec_from_file_location("run_peers", ROOT / "benchmarks" / "peers" / "run_peers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ratio_is_per_step():
    rp = load_runner()
    assert rp.ratio_of({"total_s": 0.5, "steps": 100}, {"seconds_per_iteration": 2.0, "steps": 100}) == 0.25
    # the peer ran 20 steps, diffsim 100: compare per step
    assert rp.ratio_of({"total_s": 0.5, "steps": 100}, {"seconds_per_iteration": 0.2, "steps": 20}) == 0.5
    assert rp.ratio_of({"error": "failed"}, {"seconds_per_iteration": 1.0}) is None


@pytest.mark.skipif(not load_runner().can_pin(), reason="needs two cores and sched_setaffinity")
def test_concurrent_commands_run_pinned_to_their_cores():
    rp = load_runner()
    cores = sorted(os.sched_getaffinity(0))[:2]
    probe = (
        "import json, os, time; time.sleep(0.5); "
        "print(json.dumps({'cores': sorted(os.sched_getaffinity(0)), 't': time.time()}))"
    )
    a, b = rp.run_together([[sys.executable, "-c", probe]] * 2, cores)
    assert a["cores"] == [cores[0]] and b["cores"] == [cores[1]]
    assert abs(a["t"] - b["t"]) < 0.4  # they ran at the same time, not one after the other
    # a failing command reports its last line of stderr; the other is unaffected
    failed, ok = rp.run_together(
        [[sys.executable, "-c", "import sys; sys.exit('boom')"], [sys.executable, "-c", "print(1)"]], cores
    )
    assert failed == {"error": "boom"} and ok == 1
