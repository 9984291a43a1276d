"""Reverse- and forward-mode automatic differentiation over hand-written primitives.

Knows nothing about fluids: any numpy code written with :mod:`fluidgrad.numpy` (or
new primitives registered with :func:`primitive`) can be differentiated.
"""

import types as _types

from . import tensor as _tensor_module
from .core import (DifferentiationError, Primitive, detect_anomaly, differentiable_primitives,
                   primitive)
from .tensor import Tensor
from .transforms import (Tape, checkpoint, elementwise_grad, grad, jvp, stop_gradient, tensor,
                         value_and_grad, vjp)
from .tree import register_tree
from . import ops

_tensor_module._np = _types.SimpleNamespace(**ops.NAMESPACE)

__all__ = ["DifferentiationError", "detect_anomaly", "Primitive", "Tape", "Tensor", "checkpoint",
           "differentiable_primitives", "elementwise_grad", "grad", "jvp", "primitive",
           "register_tree", "stop_gradient", "tensor", "value_and_grad", "vjp"]
