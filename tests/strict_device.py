"""A strict stand-in for cupy on the CPU: device arrays that refuse to mix with host arrays
exactly where cupy's do, so that every place in the glue where a host (numpy) array and a
device array would meet fails in CI, without a GPU.

What cupy refuses, the stand-in refuses (``TypeError``):

* implicit conversion to numpy: ``np.asarray(x)``, ``np.array(x)``, and so every numpy
  call that converts its arguments (``x.__array__`` raises with cupy's message);
* numpy arrays among the operands of an operator, a ufunc or a function of the module:
  ``x + np.ones(3)``, ``np.ones(3) * x``, ``xp.concatenate([x, np.ones(3)])``.

What cupy allows, the stand-in allows: the explicit moves (``xp.asarray(host)``,
``x.get()``, ``xp.asnumpy(x)``), Python and numpy scalars as operands, ``float(x)`` /
``int(x)`` / ``bool(x)`` / ``x.item()`` of one element, numpy functions on device arrays
(``__array_function__``: the result is a device array). Reductions and scalar indexing
return 0-d device arrays, as cupy's do. Stricter than cupy: host arrays as indices or as
values in ``x[...] = host`` are refused (cupy would copy them to the device, implicitly).

Installed for a test with :func:`installed` (``get_backend('cupy')`` returns this module
and ``is_cupy_array`` recognizes its arrays); the kernels then run their array-API
references, as on cupy where no GPU kernel exists. Arrays have no
``__cuda_array_interface__``, so GPU kernels decline them.
"""

from __future__ import annotations

import contextlib
import operator
import types

import numpy as np
import scipy.fft

MESSAGE = ("Implicit conversion to a NumPy array is not allowed. "
           "Please use `.get()` to construct a NumPy array explicitly.")


def _unwrap(x, where):
    """The numpy data of the device arrays in ``x`` (lists, tuples, dicts walked); a host
    ndarray among them is a TypeError, as cupy's."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        raise TypeError(f"Unsupported type {type(x)} ({where}: a numpy array among device arrays)")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, where) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, where) for k, v in x.items()}
    return x


def _wrap(x):
    """Device arrays for the numpy arrays (and numpy scalars: cupy returns 0-d arrays) in ``x``."""
    if isinstance(x, np.ndarray):
        return ndarray(x)
    if isinstance(x, np.generic):
        return ndarray(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _index(key):
    """An index of device arrays, slices and integers; a host index array is refused
    (stricter than cupy, which moves one to the device: the move is then explicit)."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    return _unwrap(key, "an index")


class ndarray:  # noqa: N801 - the name cupy's array type has
    """A device array: numpy data that never leaves except explicitly (:meth:`get`)."""

    __slots__ = ("_a",)
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, a):
        assert isinstance(a, np.ndarray)
        self._a = a

    def __array__(self, dtype=None, copy=None):
        raise TypeError(MESSAGE)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = _unwrap(inputs, f"numpy.{ufunc.__name__}")
        if "out" in kwargs:
            kwargs["out"] = _unwrap(kwargs["out"], f"numpy.{ufunc.__name__}(out=)")
        return _wrap(getattr(ufunc, method)(*inputs, **kwargs))

    def __array_function__(self, func, types_, args, kwargs):
        where = f"numpy.{func.__name__}"
        return _wrap(func(*_unwrap(args, where), **_unwrap(kwargs, where)))

    def get(self, stream=None):
        """A host (numpy) copy."""
        return self._a.copy()

    def set(self, host):
        self._a[...] = host

    # -- what a device array tells without moving its data --
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))
    real = property(lambda self: ndarray(self._a.real))
    imag = property(lambda self: ndarray(self._a.imag))

    def __getattr__(self, name):  # the methods: reshape, astype, sum, max, copy, ...
        if name.startswith("__"):  # never numpy's __array_interface__, __array_struct__, __dlpack__ ...
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            where = f"ndarray.{name}"
            return _wrap(attr(*_unwrap(args, where), **_unwrap(kwargs, where)))
        return method

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        self._a[_index(key)] = _unwrap(value, "a value set into a device array")

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(v) for v in self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return operator.index(self._a)

    def __complex__(self):
        return complex(self._a)

    def __bool__(self):
        return bool(self._a)

    def __repr__(self):
        return f"device({self._a!r})"

    def __reduce__(self):
        return ndarray, (self._a,)

    def __copy__(self):
        return ndarray(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray(self._a.copy())


def _defers(other):
    """Whether an operator leaves ``other`` its reflected operator, as cupy's do: it sets
    ``__array_ufunc__ = None`` (fluidgrad's Tensor does), or has no ``__array_ufunc__``
    and a higher ``__array_priority__``."""
    try:
        return type(other).__array_ufunc__ is None
    except AttributeError:
        return getattr(other, "__array_priority__", 0) > ndarray.__array_priority__


def _binary(name):
    fun = getattr(operator, name)

    def forward(self, other):
        if _defers(other):
            return NotImplemented
        return _wrap(fun(self._a, _unwrap(other, f"operator {name}")))

    def reflected(self, other):
        return _wrap(fun(_unwrap(other, f"operator {name}"), self._a))

    def inplace(self, other):
        getattr(operator, "i" + name)(self._a, _unwrap(other, f"operator i{name}"))
        return self
    return forward, reflected, inplace


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and_", "or_", "xor",
              "lshift", "rshift"):
    _f, _r, _i = _binary(_name)
    _dunder = _name.rstrip("_")
    setattr(ndarray, f"__{_dunder}__", _f)
    setattr(ndarray, f"__r{_dunder}__", _r)
    setattr(ndarray, f"__i{_dunder}__", _i)
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_name}__", _binary(_name)[0])
for _name in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_name}__", (lambda fun: lambda self: _wrap(fun(self._a)))(getattr(operator, _name)))


class _Namespace(types.ModuleType):
    """numpy's functions (or another module's) on device arrays: arguments unwrapped,
    host arrays refused (except by ``allow_host``, the explicit host-to-device moves),
    results wrapped."""

    def __init__(self, name, source, allow_host=(), **extra):
        super().__init__(name)
        self._source, self._allow_host = source, frozenset(allow_host)
        self.__dict__.update(extra)

    def __getattr__(self, name):
        attr = getattr(self._source, name)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes, constants, classes

        def function(*args, **kwargs):
            if name in self._allow_host:
                args = tuple(a._a if isinstance(a, ndarray) else a for a in args)
            else:
                where = f"{self.__name__}.{name}"
                args, kwargs = _unwrap(args, where), _unwrap(kwargs, where)
            return _wrap(attr(*args, **kwargs))
        function.__name__ = name
        return function


def _asarray(a, dtype=None, order=None, copy=None):
    """Host or device data to a device array (a copy of host data, as cupy's transfer)."""
    if isinstance(a, ndarray):
        out = a._a if dtype is None else a._a.astype(dtype, copy=False)
        return ndarray(out.copy() if copy else out)
    return ndarray(np.array(a, dtype=dtype, order=order, copy=True))


def _asnumpy(a, stream=None, order="C", out=None):
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def _scatter_add(a, slices, value):
    np.add.at(a._a, _index(slices), value._a if isinstance(value, ndarray) else value)


class _Type4Refused(_Namespace):
    """cupyx.scipy.fft has DCT/DST types 2 and 3 only."""

    def __getattr__(self, name):
        fun = super().__getattr__(name)
        if name.lstrip("i") not in ("dct", "dst", "dctn", "dstn"):
            return fun

        def real_transform(*args, type=2, **kwargs):  # noqa: A002 - scipy's keyword
            if type == 4:
                raise NotImplementedError("type 4 is not supported (cupyx)")
            return fun(*args, type=type, **kwargs)
        return real_transform


cupy = _Namespace("strict_device.cupy", np, allow_host=("asarray", "array", "asanyarray"), ndarray=ndarray,
                  asarray=_asarray, array=_asarray, asnumpy=_asnumpy,
                  fft=_Namespace("strict_device.cupy.fft", np.fft),
                  linalg=_Namespace("strict_device.cupy.linalg", np.linalg))
# the stand-in for cupyx.scipy.fft carries that module's name, which spectral.py keys its
# missing type-4 transforms by
cupyx = _Namespace("strict_device.cupyx", np, scatter_add=_scatter_add,
                   scipy=types.SimpleNamespace(fft=_Type4Refused("cupyx.scipy.fft", scipy.fft)))


@contextlib.contextmanager
def installed():
    """The stand-in in place of cupy inside the block (``get_backend('cupy')`` returns it)."""
    from fluidgrad import backend
    with backend.device_stand_in(cupy, cupyx):
        yield cupy

