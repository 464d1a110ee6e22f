"""What the backend-agreement tests (`tests/*/test_backends.py`) share: one rollout's loss, trajectory and
gradients, and the comparisons between backends and precisions (relative tolerances, see each test's docstring)."""

import numpy as np


def run(sim, keys=None):
    """(loss, trajectory, gradients) of one forward and backward pass of `sim`; `keys`: the quantities of the
    trajectory to keep (default all)."""
    value, grads = sim.value_and_grad()
    traj = sim.trajectory()
    if keys is not None:
        traj = {k: traj[k] for k in keys}
    return value, traj, grads


def rel(a, b):
    """The largest difference of a from b, relative to the largest magnitude of b."""
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


def assert_agree(ref, other, loss, traj=None, grads=None):
    """`other`'s rollout (loss, trajectory, gradients) agrees with `ref`'s. loss: relative tolerance of the loss.
    traj: one tolerance for every quantity of `ref`'s trajectory, or {quantity: tolerance}; None: not compared.
    grads: one tolerance for every gradient, or a function name -> tolerance; None: not compared."""
    l_ref, t_ref, g_ref = ref
    l_other, t_other, g_other = other
    assert abs(l_other - l_ref) <= loss * abs(l_ref)
    if traj is not None:
        tols = traj if isinstance(traj, dict) else dict.fromkeys(t_ref, traj)
        for k, tol in tols.items():
            assert rel(t_other[k], t_ref[k]) < tol, k
    if grads is not None:
        tol_of = grads if callable(grads) else (lambda name: grads)
        for name, g in g_ref.items():
            assert rel(g_other[name], g) < tol_of(name), name


def assert_f32_near_f64(ref64, cpu32, other32, tol=1e-3, rollouts=True):
    """Each backend's f32 gradients (and, with `rollouts`, trajectory and loss) within `tol` of the CPU's f64
    ones: f32 gives f32-quality results everywhere."""
    l64, t64, g64 = ref64
    errors = {}
    for name, g in g64.items():
        errors[name] = (rel(cpu32[2][name], g), rel(other32[2][name], g))
        assert max(errors[name]) < tol, (name, errors[name])
    if rollouts:
        for k in t64:
            assert max(rel(cpu32[1][k], t64[k]), rel(other32[1][k], t64[k])) < tol, k
        assert max(abs(cpu32[0] - l64), abs(other32[0] - l64)) <= tol * abs(l64)
