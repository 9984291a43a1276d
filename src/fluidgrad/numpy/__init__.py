"""Differentiable numpy: ``import fluidgrad.numpy as np`` and write numpy code as usual.

Gradients flow through arithmetic (with broadcasting), powers, ``exp log sqrt sin cos
tanh abs ...``, ``sum mean prod max min cumsum var std``, ``maximum minimum where
clip``, ``reshape transpose`` and friends, indexing and slicing, ``stack concatenate
pad roll flip``, ``dot matmul einsum tensordot outer``. Functions without a derivative
(comparisons, ``floor``, ``argmax``, ``zeros_like``, ...) pass values through;
``np.random`` is numpy's own.
"""

import sys as _sys

from ..ad import ops as _ops

globals().update(_ops.NAMESPACE)
__all__ = sorted(_ops.NAMESPACE)
_sys.modules[__name__ + ".linalg"] = linalg  # noqa: F821 - defined by the update above
_sys.modules[__name__ + ".fft"] = fft  # noqa: F821
