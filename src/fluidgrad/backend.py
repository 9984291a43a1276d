"""Array backends: numpy on the CPU, cupy on an NVIDIA GPU, one code path for both.

Kernels never call numpy directly on arrays that could live on the GPU; they ask
``xp = xp_of(q)`` for the array module of their inputs and use ``xp`` throughout.
"""

from __future__ import annotations

import contextlib
import sys

from .errors import BackendError  # noqa: F401 (re-exported)

import numpy as np

BACKENDS = ("numpy", "cupy")

#: a stand-in for (cupy, cupyx) while a test installs one (:func:`device_stand_in`)
_stand_in = []


@contextlib.contextmanager
def device_stand_in(cupy, cupyx):
    """Inside the block, ``cupy`` and ``cupyx`` (modules of the same interface, e.g. the
    tests' strict CPU stand-in) take the place of cupy's: ``get_backend('cupy')`` returns
    ``cupy`` and :func:`is_cupy_array` recognizes its ``ndarray``. For tests only."""
    _stand_in.append((cupy, cupyx))
    try:
        yield cupy
    finally:
        _stand_in.remove((cupy, cupyx))


def _cupy():
    """The cupy module, or None when it is not installed or not usable."""
    if _stand_in:
        return _stand_in[-1][0]
    try:
        import cupy
    except Exception:  # ImportError, or a broken CUDA install raising at import
        return None
    return cupy


def get_backend(name: str = "numpy"):
    """The array module for ``name`` ('numpy' or 'cupy'); a one-line BackendError if unusable."""
    if name == "numpy":
        return np
    if name != "cupy":
        raise BackendError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if _stand_in:
        return _stand_in[-1][0]
    cupy = _cupy()
    if cupy is None:
        raise BackendError("backend 'cupy' requested but cupy is not installed "
                           "(pip install 'fluidgrad[gpu]')")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise BackendError(f"backend 'cupy' requested but no CUDA GPU is usable ({exc})") from None
    if count < 1:
        raise BackendError("backend 'cupy' requested but no CUDA GPU is present")
    return cupy


def raw(x):
    """The plain array inside a fluidgrad Tensor (or ``x`` itself). The one definition:
    the AD core re-exports it (``fluidgrad.ad.core.raw``); it lives here because the
    backend layer, below ``ad``, unwraps Tensors too."""
    while hasattr(x, "_fg_value"):
        x = x._fg_value
    return x



def cupyx():
    """The cupyx module (cupy's extras: ``scatter_add``, ``scipy.fft``)."""
    if _stand_in:
        return _stand_in[-1][1]
    import cupyx.scipy.fft  # noqa: F401 (the submodule spectral.py uses)
    return sys.modules["cupyx"]


def is_cupy_array(x) -> bool:
    """True if ``x`` (or the array inside a Tensor) is a cupy array."""
    kind = type(raw(x))
    if _stand_in:
        return issubclass(kind, _stand_in[-1][0].ndarray)
    return kind.__module__.startswith("cupy")


def xp_of(*arrays):
    """The array module (numpy or cupy) that owns ``arrays``; numpy for plain scalars."""
    for a in arrays:
        if is_cupy_array(a):
            return _cupy()
    return np


def backend_name(x) -> str:
    """'cupy' or 'numpy', for the array ``x``."""
    return "cupy" if is_cupy_array(x) else "numpy"


def to_numpy(x):
    """A numpy copy-free view (host copy for cupy) of ``x``; Tensors are unwrapped."""
    x = raw(x)
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)


def to_backend(x, name: str):
    """``x`` moved to the backend ``name`` ('numpy' or 'cupy')."""
    xp = get_backend(name)
    x = raw(x)
    if xp is np:
        return to_numpy(x)
    return xp.asarray(x)


def scatter_add(target, indices, values):
    """``target[indices] += values`` in place, adding repeated indices up (numpy and cupy)."""
    if is_cupy_array(target):
        cupyx().scatter_add(target, indices, values)
    else:
        np.add.at(target, indices, values)
    return target


def bincount_add(target_flat, flat_index, values):
    """``target_flat[flat_index] += values`` for 1-D flat indices, faster than scatter_add."""
    xp = xp_of(target_flat)
    n = target_flat.shape[0]
    if values.dtype.kind == "c":
        target_flat += xp.bincount(flat_index, weights=values.real, minlength=n)
        target_flat += 1j * xp.bincount(flat_index, weights=values.imag, minlength=n)
    else:
        target_flat += xp.bincount(flat_index, weights=values, minlength=n).astype(
            target_flat.dtype, copy=False)
    return target_flat
