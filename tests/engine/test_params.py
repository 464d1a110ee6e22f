"""Parameters: transforms, bounds, flat views, persistence."""

import json

import numpy as np
import pytest

from diffsim import DiffsimError, Parameter, ParameterSet
from tests.conftest import use


@pytest.fixture(scope="module", autouse=True)
def f64():
    use("cpu", "f64")


def test_transforms_round_trip_and_chain_rule():
    p_log = Parameter("k", (3,), [1.0, 10.0, 100.0], transform="log")
    p_sig = Parameter("mu", (), 0.3, bounds=(0.0, 2.0), transform="sigmoid")
    p_plain = Parameter("x", (2,), [1.0, -1.0], bounds=(-5, 5))
    for p in (p_log, p_sig, p_plain):
        u = p.to_unconstrained(p.numpy())
        np.testing.assert_allclose(p.from_unconstrained(u), p.numpy(), rtol=1e-12)
        h = 1e-6
        fd = (p.from_unconstrained(u + h) - p.from_unconstrained(u - h)) / (2 * h)
        np.testing.assert_allclose(p.dvalue_du(u), fd, rtol=1e-6)


def test_sigmoid_needs_bounds_and_values_respect_bounds():
    with pytest.raises(DiffsimError, match="sigmoid transform needs finite bounds"):
        Parameter("mu", (), 0.3, transform="sigmoid")
    with pytest.raises(DiffsimError, match=r"mu: value outside bounds \[0, 1\]"):
        Parameter("mu", (), 3.0, bounds=(0, 1))
    p = Parameter("x", (), 0.5, bounds=(0, 1))
    assert p.from_unconstrained(np.array(7.0)) == 1.0  # projection for plain bounds


def test_flat_view_and_gradient_in_unconstrained_coordinates():
    ps = ParameterSet([Parameter("a", (2,), [2.0, 3.0], transform="log"), Parameter("b", (), 0.5)])
    u = ps.get_flat(None)
    np.testing.assert_allclose(u, [np.log(2), np.log(3), 0.5])
    ps["a"].field.grad.from_numpy(np.array([[1.0, 1.0]]))
    ps["b"].field.grad.from_numpy(np.array([4.0]))
    np.testing.assert_allclose(ps.grad_flat(None), [2.0, 3.0, 4.0])  # d/du exp(u) = value
    ps.set_flat(["b"], np.array([0.25]))
    assert ps["b"].numpy() == 0.25


def test_per_batch_values_and_broadcast():
    p = Parameter("k", (2,), [1.0, 2.0], batch=3, per_batch=True)
    assert p.numpy().shape == (3, 2)
    p.set(np.arange(6.0).reshape(3, 2) + 1)
    assert p.numpy()[2, 1] == 6.0
    p.set([7.0, 8.0])  # broadcast a single copy's value to all copies
    np.testing.assert_array_equal(p.numpy(), [[7, 8]] * 3)


def test_save_load_json(tmp_path):
    ps = ParameterSet([Parameter("a", (2,), [2.0, 3.0]), Parameter("b", (), 0.5)])
    path = tmp_path / "p.json"
    ps.save(str(path))
    assert json.loads(path.read_text()) == {"a": [2.0, 3.0], "b": 0.5}
    ps["a"].set([0.0, 0.0])
    ps.load(str(path))
    np.testing.assert_array_equal(ps["a"].numpy(), [2.0, 3.0])
    # a result.json from `diffsim optimize` works too
    (tmp_path / "r.json").write_text(json.dumps({"final_loss": 1.0, "params": {"b": 0.75}}))
    ps.load(str(tmp_path / "r.json"))
    assert ps["b"].numpy() == 0.75
    with pytest.raises(DiffsimError, match="unknown parameter 'c'"):
        ps.load_dict({"c": 1.0}, source="x.json")
    with pytest.raises(DiffsimError, match="missing.json: file not found"):
        ps.load(str(tmp_path / "missing.json"))


def test_a_parameter_made_without_asking_wants_grad_is_left_out():
    """A user's controller that makes its Parameter without requires_grad=params.wants_grad(name) still gets the
    set's rule: reading its gradient raises, and default selections leave it out."""
    ps = ParameterSet(requires_grad=["a"])
    ps.add(Parameter("a", (), 1.0))
    b = ps.add(Parameter("b", (), 2.0))
    assert [p.name for p in ps.with_grad()] == ["a"]
    with pytest.raises(DiffsimError, match="b: this parameter was built without a gradient"):
        b.grad()
