"""``Tensor``: an array that records differentiable operations (PyTorch-style API).

A Tensor wraps a numpy or cupy array (``.value``) and belongs to a *trace*: the tape
that records what is computed from it. Arithmetic, indexing and the methods below go
through the differentiable operations of :mod:`fluidgrad.numpy`. After
``loss.backward()``, leaves created with ``requires_grad=True`` hold ``.grad``
(a plain array, accumulated with ``+=`` across calls, as in PyTorch).
"""

from __future__ import annotations

_np = None  # fluidgrad.ad.ops, bound when the package is imported (avoids an import cycle)


class Tensor:
    __slots__ = ("_fg_value", "_trace", "_node", "_index", "_tangent", "grad", "__weakref__")
    __array_priority__ = 100.0
    __array_ufunc__ = None  # numpy defers to our reflected operators

    def __init__(self, value, trace, node=None, index=0, tangent=None):
        self._fg_value = value
        self._trace = trace
        self._node = node
        self._index = index
        self._tangent = tangent
        self.grad = None

    # -- the wrapped value ---------------------------------------------------

    @property
    def value(self):
        """The plain (numpy or cupy) array, detached from the tape."""
        return self._fg_value

    data = value

    def detach(self):
        """The value as a Tensor that does not require gradients."""
        from .core import CONSTANT
        return Tensor(self._fg_value, CONSTANT)

    def numpy(self):
        """The value as a numpy array (copied from the GPU if needed)."""
        from ..backend import to_numpy
        return to_numpy(self._fg_value)

    def item(self):
        return self._fg_value.item() if hasattr(self._fg_value, "item") else self._fg_value

    @property
    def requires_grad(self) -> bool:
        return self._trace.level >= 0

    @property
    def is_leaf(self) -> bool:
        return self._node is None or self._node.prim is None

    @property
    def shape(self):
        return getattr(self._fg_value, "shape", ())

    @property
    def dtype(self):
        v = self._fg_value
        if hasattr(v, "dtype"):
            return v.dtype
        import numpy
        return numpy.result_type(v)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    def __len__(self):
        return len(self._fg_value)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self._fg_value!r}{grad})"

    def __float__(self):
        return float(self._fg_value)

    def __int__(self):
        return int(self._fg_value)

    def __complex__(self):
        return complex(self._fg_value)

    def __bool__(self):
        return bool(self._fg_value)

    def __index__(self):
        return self._fg_value.__index__()

    __hash__ = object.__hash__

    # -- reverse mode --------------------------------------------------------

    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf this depends on.
        ``gradient`` is the cotangent; it may be omitted for a scalar."""
        from .core import DifferentiationError, backward_pass
        if not self.requires_grad or self._node is None:
            raise DifferentiationError(
                "backward() on a Tensor that does not depend on any requires_grad=True input")
        if gradient is None:
            if self.shape != ():
                raise DifferentiationError(
                    f"backward() needs a gradient argument for a non-scalar Tensor of shape "
                    f"{self.shape}")
            gradient = _np.ones_like(self._fg_value)
        else:
            gradient = getattr(gradient, "_fg_value", gradient)
        for leaf in backward_pass(self._trace, [(self, gradient)], retain_graph):
            g = leaf.out_grads[0]
            leaf.out_grads = None
            tensor = leaf.tensor
            tensor.grad = g if tensor.grad is None else tensor.grad + g

    def zero_grad(self):
        self.grad = None

    # -- operators -----------------------------------------------------------

    def __neg__(self): return _np.negative(self)
    def __pos__(self): return self
    def __abs__(self): return _np.abs(self)
    def __add__(self, other): return _np.add(self, other)
    def __radd__(self, other): return _np.add(other, self)
    def __sub__(self, other): return _np.subtract(self, other)
    def __rsub__(self, other): return _np.subtract(other, self)
    def __mul__(self, other): return _np.multiply(self, other)
    def __rmul__(self, other): return _np.multiply(other, self)
    def __truediv__(self, other): return _np.divide(self, other)
    def __rtruediv__(self, other): return _np.divide(other, self)
    def __pow__(self, other): return _np.power(self, other)
    def __rpow__(self, other): return _np.power(other, self)
    def __matmul__(self, other): return _np.matmul(self, other)
    def __rmatmul__(self, other): return _np.matmul(other, self)
    def __floordiv__(self, other): return _np.floor_divide(self, other)
    def __rfloordiv__(self, other): return _np.floor_divide(other, self)
    def __mod__(self, other): return _np.mod(self, other)
    def __rmod__(self, other): return _np.mod(other, self)
    def __eq__(self, other): return _np.equal(self, other)
    def __ne__(self, other): return _np.not_equal(self, other)
    def __lt__(self, other): return _np.less(self, other)
    def __le__(self, other): return _np.less_equal(self, other)
    def __gt__(self, other): return _np.greater(self, other)
    def __ge__(self, other): return _np.greater_equal(self, other)

    def __getitem__(self, index): return _np.getitem(self, index)

    def __setitem__(self, index, value):
        raise TypeError("in-place assignment to a Tensor is not differentiable; build the "
                        "array with fluidgrad.numpy.where, concatenate or stack instead")

    # -- numpy-style methods ---------------------------------------------------

    @property
    def T(self): return _np.transpose(self)

    def transpose(self, *axes):
        return _np.transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    def reshape(self, *shape, order="C"):
        return _np.reshape(self, shape[0] if len(shape) == 1 else shape, order=order)

    def ravel(self): return _np.ravel(self)
    def flatten(self): return _np.ravel(self)
    def squeeze(self, axis=None): return _np.squeeze(self, axis)
    def astype(self, dtype): return _np.astype(self, dtype)
    def dot(self, other): return _np.dot(self, other)
    def conj(self): return _np.conj(self)
    def sum(self, axis=None, keepdims=False): return _np.sum(self, axis, keepdims=keepdims)
    def mean(self, axis=None, keepdims=False): return _np.mean(self, axis, keepdims=keepdims)
    def prod(self, axis=None, keepdims=False): return _np.prod(self, axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return _np.max(self, axis, keepdims=keepdims)
    def min(self, axis=None, keepdims=False): return _np.min(self, axis, keepdims=keepdims)
    def var(self, axis=None, ddof=0, keepdims=False):
        return _np.var(self, axis, ddof=ddof, keepdims=keepdims)
    def std(self, axis=None, ddof=0, keepdims=False):
        return _np.std(self, axis, ddof=ddof, keepdims=keepdims)
    def cumsum(self, axis=None): return _np.cumsum(self, axis)
    def clip(self, a_min=None, a_max=None): return _np.clip(self, a_min, a_max)
    def argmax(self, axis=None): return _np.argmax(self, axis)
    def argmin(self, axis=None): return _np.argmin(self, axis)
