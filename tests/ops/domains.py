"""Small domains covering every boundary type in 2-D and 3-D, for kernel tests."""

from fluidgrad.boundaries import Boundaries, BoundaryFace, Domain, Obstacle
from fluidgrad.grid import Grid

H = 0.125


def _grid(shape):
    return Grid(shape, tuple(n * H for n in shape))


def _faces(**named):
    return named


def make(name, ndim):
    shape = (8, 6) if ndim == 2 else (6, 5, 4)
    grid = _grid(shape)
    lid = [0.0] * ndim
    lid[0] = 1.5
    if name == "periodic":
        return Domain(grid, Boundaries.periodic(ndim))
    if name == "no_slip":
        return Domain(grid, Boundaries.closed(ndim, "no_slip"))
    if name == "free_slip":
        return Domain(grid, Boundaries.closed(ndim, "free_slip"))
    if name == "moving_wall":
        spec = {"y_hi": {"type": "no_slip", "velocity": lid}}
        return Domain(grid, Boundaries.from_dict(spec, ndim))
    if name == "inflow_outflow":
        inflow = [1.0, 0.3] + ([-0.2] if ndim == 3 else [])
        spec = {"x_lo": {"type": "inflow", "velocity": inflow}, "x_hi": "outflow", "y": "free_slip"}
        if ndim == 3:
            spec["z"] = "periodic"
        return Domain(grid, Boundaries.from_dict(spec, ndim))
    if name == "mixed":
        spec = {"x": "periodic", "y_lo": "free_slip", "y_hi": "no_slip"}
        return Domain(grid, Boundaries.from_dict(spec, ndim))
    if name == "obstacle":
        center = tuple(n * H / 2 for n in shape)
        ob = Obstacle("circle" if ndim == 2 else "sphere", center=center, radius=1.6 * H)
        return Domain(grid, Boundaries.closed(ndim, "no_slip"), [ob])
    raise KeyError(name)


NAMES = ("periodic", "no_slip", "free_slip", "moving_wall", "inflow_outflow", "mixed", "obstacle")
ALL = [(name, ndim) for ndim in (2, 3) for name in NAMES]
