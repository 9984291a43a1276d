"""Initial fields from the scenario's ``initial:`` section, and images/arrays loaded onto
the grid.

Velocity: ``zero``, ``uniform`` (value), ``taylor_green`` (amplitude, k),
``random`` (seed, amplitude = RMS speed, smooth = correlation length in cells;
divergence-free: built from a random stream function / vector potential), ``file``
(a ``result.npz`` or an npz with ``u``, ``v`` (``w``)).
Density: ``zero``, ``gaussian`` (center, radius, value), ``box`` (lower, upper, value),
``image`` (a grayscale picture, white = 1, stretched over the box), ``file`` (npz with
``density``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as onp

from .errors import InputError, UnknownNameError
from .potential import potential_shapes, velocity_from_potential


#: velocity types and the keys each takes
VELOCITY_TYPES = {"zero": (), "uniform": ("value",), "taylor_green": ("amplitude", "k"),
                  "random": ("seed", "amplitude", "smooth"), "file": ("path",)}
#: density types and the keys each takes
DENSITY_TYPES = {"zero": (), "gaussian": ("center", "radius", "value"), "box": ("lower", "upper", "value"),
                 "image": ("path", "value"), "file": ("path",)}


def load_image(path, shape):
    """A grayscale image as floats in [0, 1] resampled to ``shape`` (2-D), y upward."""
    import imageio.v3 as iio
    from scipy import ndimage
    import warnings
    try:
        with warnings.catch_warnings():  # imageio warns while probing plugins for odd files
            warnings.simplefilter("ignore")
            img = onp.asarray(iio.imread(path), dtype=float)
    except Exception as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1) if img.shape[-1] >= 3 else img[..., 0]
    if img.max() > 1.0:
        img = img / 255.0
    field = onp.flipud(img).T  # rows top-down -> [x, y] with y up
    zoom = [n / m for n, m in zip(shape, field.shape)]
    out = ndimage.zoom(field, zoom, order=1, mode="nearest", grid_mode=True)
    return onp.clip(out[: shape[0], : shape[1]], 0.0, 1.0)


def load_npz(path, keys):
    try:
        with onp.load(path) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise InputError(f"{path}: no array {missing[0]!r} (has {', '.join(data.files)})")
            return {k: onp.asarray(data[k], dtype=float) for k in keys}
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(str(path)):
            raise
        raise InputError(f"cannot read {path}: {exc}") from None


def density_field(spec: dict, grid, base: Path | None = None):
    """The initial density described by ``spec`` on ``grid``."""
    kind = spec.get("type", "zero")
    if kind == "zero":
        return onp.zeros(grid.shape)
    if kind == "gaussian":
        xs = grid.mesh()
        r2 = sum((x - c) ** 2 for x, c in zip(xs, spec["center"]))
        with onp.errstate(over="ignore"):  # a huge radius squares to inf: a uniform field
            return float(spec.get("value", 1.0)) * onp.exp(-r2 / (2 * onp.float64(spec["radius"]) ** 2))
    if kind == "box":
        xs = grid.mesh()
        inside = onp.ones(grid.shape, dtype=bool)
        for x, lo, hi in zip(xs, spec["lower"], spec["upper"]):
            inside &= (x >= lo) & (x <= hi)
        return float(spec.get("value", 1.0)) * inside
    if kind == "image":
        return float(spec.get("value", 1.0)) * load_image(_resolve(spec["path"], base), grid.shape)
    if kind == "file":
        return _resample(load_npz(_resolve(spec["path"], base), ["density"])["density"], grid.shape)
    raise UnknownNameError("density type", kind, DENSITY_TYPES)


def _resample(field, shape):
    """``field`` linearly resampled to ``shape`` (unchanged when the shapes agree)."""
    if field.shape == tuple(shape):
        return field
    from scipy import ndimage
    if field.ndim != len(shape):
        raise InputError(f"a {field.ndim}-D field cannot be used on a {len(shape)}-D grid")
    return ndimage.zoom(field, [n / m for n, m in zip(shape, field.shape)], order=1, mode="nearest",
                        grid_mode=True)


def velocity_field(spec: dict, domain, base: Path | None = None):
    """The initial MAC velocity (a tuple of face arrays) described by ``spec``."""
    kind = spec.get("type", "zero")
    grid = domain.grid
    shapes = domain.velocity_shapes
    if kind == "zero":
        return tuple(onp.zeros(s) for s in shapes)
    if kind == "uniform":
        return tuple(onp.full(s, float(v)) for s, v in zip(shapes, spec["value"]))
    if kind == "taylor_green":
        return _taylor_green(domain, float(spec.get("amplitude", 1.0)), int(spec.get("k", 1)))
    if kind == "random":
        return _random_velocity(domain, int(spec.get("seed", 0)), float(spec.get("amplitude", 1.0)),
                                float(spec.get("smooth", 4.0)))
    if kind == "file":
        names = ["u", "v", "w"][: grid.ndim]
        path = _resolve(spec["path"], base)
        data = load_npz(path, names)
        for n, shape in zip(names, shapes):
            if data[n].shape != tuple(shape):
                raise InputError(f"{path}: array {n!r} has shape {data[n].shape}; this grid's {n} faces "
                                 f"need {tuple(shape)}")
        return tuple(data[n] for n in names)
    raise UnknownNameError("velocity type", kind, VELOCITY_TYPES)


def _resolve(path, base):
    path = Path(path)
    return path if path.is_absolute() or base is None else base / path


def _taylor_green(domain, amplitude, k):
    """``u = A sin(kx) cos(ky)``, ``v = -A cos(kx) sin(ky)`` (x, y scaled to 2π per box
    length); in 3-D the same in each z-plane, w = 0."""
    grid = domain.grid
    out = []
    for d in range(grid.ndim):
        xs = grid.mesh(d, domain.periodic(d))
        X = 2 * math.pi * k * xs[0] / grid.size[0]
        Y = 2 * math.pi * k * xs[1] / grid.size[1]
        if d == 0:
            out.append(amplitude * onp.sin(X) * onp.cos(Y))
        elif d == 1:
            out.append(-amplitude * onp.cos(X) * onp.sin(Y))
        else:
            out.append(onp.zeros_like(X))
    return tuple(out)


def _smooth_noise(shape, rng, length):
    """Gaussian-filtered white noise with correlation length ``length`` (in cells)."""
    from scipy import ndimage
    return ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(length, 0.0), mode="wrap")


def _random_velocity(domain, seed, amplitude, smooth):
    """Divergence-free random velocity: curl of smooth noise, scaled to RMS ``amplitude``."""
    rng = onp.random.default_rng(seed)
    potential = tuple(_smooth_noise(s, rng, smooth) for s in potential_shapes(domain))
    u = velocity_from_potential(potential, domain)
    rms = math.sqrt(sum(float((a * a).sum()) for a in u) / max(sum(a.size for a in u), 1))
    return tuple(a * (amplitude / rms if rms > 0 else 0.0) for a in u)
