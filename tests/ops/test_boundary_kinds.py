"""The boundary kind table: every kind's rule, the ghost rules and spectral transforms
the kernels read from it (unchanged from when they compared kind names), an unknown
kind naming its key, and a new kind added by one table entry."""

import numpy as onp
import pytest

import fluidgrad as fg
from fluidgrad import boundaries
from fluidgrad.boundaries import RULES, BoundaryRule, Boundaries, Domain
from fluidgrad.grid import Grid
from fluidgrad.ops import spectral, stencils
from fluidgrad.ops.pressure import PressureSolve, project
from fluidgrad.ops.stencils import divergence

from ops import domains

#: ``axis_kinds`` per location, as the sign of the ghost coefficient gave them before
#: the table (keys: domain name, ndim; values: pressure, center, then each component)
SPECTRAL_KINDS = {
    ("free_slip", 2): ("NN NN", "NN NN", "NN NN", "NN NN"),
    ("free_slip", 3): ("NN NN NN",) * 5,
    ("inflow_outflow", 2): ("ND NN", "NN NN", "NN NN", "DN NN"),
    ("inflow_outflow", 3): ("ND NN periodic", "NN NN periodic", "NN NN periodic", "DN NN periodic",
                            "DN NN periodic"),
    ("mixed", 2): ("periodic NN", "periodic NN", "periodic ND", "periodic NN"),
    ("mixed", 3): ("periodic NN NN", "periodic NN NN", "periodic ND DD", "periodic NN DD", "periodic ND NN"),
    ("moving_wall", 2): ("NN NN", "NN NN", "NN DD", "DD NN"),
    ("moving_wall", 3): ("NN NN NN", "NN NN NN", "NN DD DD", "DD NN DD", "DD DD NN"),
    ("no_slip", 2): ("NN NN", "NN NN", "NN DD", "DD NN"),
    ("no_slip", 3): ("NN NN NN", "NN NN NN", "NN DD DD", "DD NN DD", "DD DD NN"),
    ("obstacle", 2): ("NN NN", "NN NN", "NN DD", "DD NN"),
    ("obstacle", 3): ("NN NN NN", "NN NN NN", "NN DD DD", "DD NN DD", "DD DD NN"),
    ("periodic", 2): ("periodic periodic",) * 4,
    ("periodic", 3): ("periodic periodic periodic",) * 5,
}


def test_the_table_describes_every_kind():
    assert boundaries.KINDS == ("periodic", "no_slip", "free_slip", "inflow", "outflow")
    assert boundaries.WALLS == ("no_slip", "free_slip")
    assert [k for k, r in RULES.items() if r.periodic] == ["periodic"]
    assert [k for k, r in RULES.items() if r.open] == ["outflow"]
    assert [k for k, r in RULES.items() if r.pressure_dirichlet] == ["outflow"]
    assert [k for k, r in RULES.items() if r.tangential == "D"] == ["no_slip", "inflow"]
    assert {k: r.velocity for k, r in RULES.items()} == {"periodic": "none", "no_slip": "optional",
                                                        "free_slip": "none", "inflow": "required",
                                                        "outflow": "none"}


@pytest.mark.parametrize("name, ndim", domains.ALL)
def test_spectral_kinds_are_unchanged(name, ndim):
    domain = domains.make(name, ndim)
    got = tuple(" ".join(spectral.axis_kinds(domain, loc)) for loc in ("pressure", "center", *range(ndim)))
    assert got == SPECTRAL_KINDS[(name, ndim)]


@pytest.mark.parametrize("name, ndim", domains.ALL)
def test_the_letters_agree_with_the_ghost_rules(name, ndim):
    domain = domains.make(name, ndim)
    for axis in range(ndim):
        if domain.periodic(axis):
            continue
        for side in (0, 1):
            for loc in ("pressure", "center", *range(ndim)):
                a, b = (stencils.pressure_rule(domain, axis, side) if loc == "pressure"
                        else stencils.cell_rule(domain, loc, axis, side))
                letter = domain.boundaries.rule(axis, side).letter(loc, axis)
                assert a == {"N": 1.0, "D": -1.0}[letter]
                assert b == 0.0 or letter == "D"


def test_ghost_rules_of_moving_walls_inflow_and_outflow():
    lid = domains.make("moving_wall", 2)
    assert stencils.velocity_rule(lid, 0, 1, 1) == (-1.0, 3.0)  # face value 1.5
    assert stencils.velocity_rule(lid, 0, 1, 0) == (-1.0, 0.0)
    assert stencils.velocity_rule(lid, 1, 1, 1) == (1.0, 0.0)   # normal component
    flow = domains.make("inflow_outflow", 2)
    assert stencils.velocity_rule(flow, 1, 0, 0) == (-1.0, 0.6)
    assert stencils.velocity_rule(flow, 1, 0, 1) == (1.0, 0.0)
    assert stencils.pressure_rule(flow, 0, 1) == stencils.DIRICHLET0
    assert stencils.pressure_rule(flow, 0, 0) == stencils.NEUMANN
    assert flow.has_outflow and not lid.has_outflow
    onp.testing.assert_array_equal(flow.open_faces[0][[0, -1], 0], [False, True])
    onp.testing.assert_allclose(flow.fixed_velocity[0][0], 1.0)


@pytest.mark.parametrize("spec, key", [({"x_lo": "noslip"}, "boundaries.x_lo"),
                                       ({"y": {"type": "wal"}}, "boundaries.y.type")])
def test_an_unknown_kind_names_its_key(spec, key):
    with pytest.raises(fg.UnknownNameError) as info:
        Boundaries.from_dict(spec, 2)
    assert info.value.key == key and info.value.choices == boundaries.KINDS


def test_a_new_kind_is_one_table_entry(monkeypatch):
    """An opening: pressure held at 0 and no tangential flow, normal velocity free."""
    monkeypatch.setitem(RULES, "opening", BoundaryRule(open=True, pressure="D", tangential="D"))
    domain = Domain(Grid((8, 6), (1.0, 0.75)), Boundaries.from_dict({"x_hi": "opening"}, 2))
    assert spectral.axis_kinds(domain) == ("ND", "NN")
    assert spectral.axis_kinds(domain, 1) == ("DD", "NN")
    assert domain.has_outflow and domain.open_faces[0][-1].all()
    rng = onp.random.default_rng(0)
    u = tuple(rng.standard_normal(s) for s in domain.velocity_shapes)
    for solver in ("dct", "cg"):
        out, _ = project(u, domain=domain, solve=PressureSolve(solver, tolerance=1e-10))
        assert float(onp.abs(divergence(out, domain=domain)).max()) < 1e-8
