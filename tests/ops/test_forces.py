"""Vorticity confinement's hand-written VJP: what it keeps alive (it sets the peak memory of
a 2-D gradient; its values are checked with every other kernel in the primitive tests)."""

import tracemalloc

import numpy as onp
import pytest

from fluidgrad.boundaries import Boundaries, Domain
from fluidgrad.grid import Grid
from fluidgrad.ops import forces


@pytest.mark.parametrize("boundaries", ["periodic", "no_slip"])
def test_the_confinement_vjp_keeps_few_cell_fields_alive(boundaries):
    """At 256² float64 (0.5 MiB a field) the VJP's own peak, beyond its inputs, is ~10 cell
    fields; written as the forward's formulas it held ~20 (the 512² gradient's peak)."""
    n = 256
    bounds = Boundaries.periodic(2) if boundaries == "periodic" else Boundaries.closed(2, "no_slip")
    domain = Domain(Grid((n, n), (1.0, 1.0)), bounds)
    rng = onp.random.default_rng(0)
    velocity = tuple(rng.standard_normal(s) for s in domain.velocity_shapes)
    g = tuple(rng.standard_normal(s) for s in domain.velocity_shapes)
    field = n * n * 8
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        adj_u, adj_epsilon = forces._confinement_vjp(g, None, velocity, 0.7, domain=domain)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert all(a.shape == u.shape for a, u in zip(adj_u, velocity)) and onp.isfinite(adj_epsilon)
    assert peak / field < 12.5, f"{peak / field:.1f} cell fields"  # 21 before, 10.0 now
