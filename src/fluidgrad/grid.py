"""A uniform Cartesian grid with square (cubic) cells and its MAC (staggered) layout.

Scalars (density, pressure) live at cell centres ``x_i = (i + ½) h``. Velocity
component ``d`` lives on the faces normal to axis ``d``: face ``k`` sits at
``x_d = k h``, between cells ``k - 1`` and ``k``. Along a periodic axis there are
``n`` such faces (face 0 is also face n); along a bounded axis there are ``n + 1``,
the first and last lying on the walls. Arrays are indexed ``[x, y(, z)]``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as onp

from .errors import InputError

AXES = "xyz"


@dataclasses.dataclass(frozen=True)
class Grid:
    """Geometry of a box ``[0, Lx] × [0, Ly] (× [0, Lz])`` split into ``resolution`` cells."""

    resolution: tuple
    size: tuple

    def __post_init__(self):
        res = tuple(int(n) for n in self.resolution)
        size = tuple(float(s) for s in self.size)
        if len(res) not in (2, 3):
            raise InputError(f"expected 2 or 3 numbers, got {len(res)}", key="grid.resolution")
        if len(size) != len(res):
            raise InputError(f"expected {len(res)} numbers (one per axis), got {len(size)}", key="grid.size")
        if any(n < 1 for n in res):
            raise InputError(f"cell counts must be positive (got {list(res)})", key="grid.resolution")
        if any(not s > 0 or not math.isfinite(s) for s in size):
            raise InputError(f"lengths must be positive (got {list(size)})", key="grid.size")
        spacing = [s / n for s, n in zip(size, res)]
        if any(abs(h - spacing[0]) > 1e-9 * spacing[0] for h in spacing):
            raise InputError(f"cells must be square, but size/resolution gives spacings "
                             f"{[round(h, 12) for h in spacing]}", key="grid")
        object.__setattr__(self, "resolution", res)
        object.__setattr__(self, "size", size)

    @property
    def ndim(self) -> int:
        return len(self.resolution)

    @property
    def shape(self) -> tuple:
        """Shape of a cell-centred array."""
        return self.resolution

    @property
    def dx(self) -> float:
        """The cell size h."""
        return self.size[0] / self.resolution[0]

    @property
    def cell_volume(self) -> float:
        return self.dx ** self.ndim

    @property
    def num_cells(self) -> int:
        return math.prod(self.resolution)

    def cell_centers(self, axis: int):
        """Cell-centre coordinates ``(i + ½) h`` along ``axis`` (1-D numpy array)."""
        return (onp.arange(self.resolution[axis]) + 0.5) * self.dx

    def face_positions(self, axis: int, periodic: bool):
        """Face coordinates ``k h`` along ``axis`` (n faces if periodic, else n + 1)."""
        n = self.resolution[axis] + (0 if periodic else 1)
        return onp.arange(n) * self.dx

    def face_shape(self, axis: int, periodic: bool) -> tuple:
        """Shape of the velocity component normal to ``axis``."""
        shape = list(self.resolution)
        shape[axis] += 0 if periodic else 1
        return tuple(shape)

    def mesh(self, location="center", periodic=None):
        """Coordinate arrays (``ij`` indexing) of cell centres, or of the faces normal to
        axis ``location`` (an int; ``periodic`` says whether that axis is periodic)."""
        axes = []
        for d in range(self.ndim):
            if location == d:
                axes.append(self.face_positions(d, bool(periodic)))
            else:
                axes.append(self.cell_centers(d))
        return onp.meshgrid(*axes, indexing="ij")
