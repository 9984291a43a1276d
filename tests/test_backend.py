import numpy as onp
import pytest

import fluidgrad as fg
from fluidgrad import backend


def test_numpy_is_the_default():
    assert backend.get_backend() is onp
    assert backend.xp_of(onp.ones(2), 1.0) is onp
    assert backend.xp_of(fg.tensor(onp.ones(2))) is onp


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(backend.BackendError, match="unknown backend 'torch'"):
        backend.get_backend("torch")


def test_missing_cupy_or_gpu_is_a_one_line_error():
    if backend._cupy() is not None:
        try:
            backend.get_backend("cupy")
            pytest.skip("a GPU is present")
        except backend.BackendError as exc:
            assert "\n" not in str(exc)
        return
    with pytest.raises(backend.BackendError, match="cupy is not installed"):
        backend.get_backend("cupy")


def test_to_numpy_unwraps_tensors():
    t = fg.tensor([1.0, 2.0], requires_grad=True)
    out = fg.to_numpy(t * 2)
    assert type(out) is onp.ndarray and list(out) == [2.0, 4.0]


def test_scatter_add_adds_repeated_indices():
    target = onp.zeros(4)
    backend.scatter_add(target, onp.array([0, 0, 3]), onp.array([1.0, 2.0, 5.0]))
    onp.testing.assert_array_equal(target, [3.0, 0.0, 0.0, 5.0])
    flat = onp.zeros(4, dtype=onp.float32)
    backend.bincount_add(flat, onp.array([1, 1, 2]), onp.array([1.0, 2.0, 5.0], dtype=onp.float32))
    assert flat.dtype == onp.float32
    onp.testing.assert_array_equal(flat, [0.0, 3.0, 5.0, 0.0])


@pytest.mark.gpu
def test_cupy_round_trip_and_gradient():
    cp = backend.get_backend("cupy")
    x = cp.linspace(0, 1, 5)
    assert backend.xp_of(x) is cp
    g = fg.grad(lambda x: fg.numpy.sum(fg.numpy.sin(x) ** 2))(x)
    assert backend.is_cupy_array(g)
    onp.testing.assert_allclose(backend.to_numpy(g), onp.sin(2 * onp.linspace(0, 1, 5)), rtol=1e-12)
