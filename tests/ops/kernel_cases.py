"""Test inputs for every fluid kernel primitive, on every boundary configuration in
2-D and 3-D (see domains.py). Merged into the registry-driven primitive tests."""

import numpy as onp

from fluidgrad.ops.advection import SCHEMES

from ad.primitive_cases import Case
from ops import domains


def velocity(domain, rng, scale=1.0):
    return tuple(scale * rng.standard_normal(s) for s in domain.velocity_shapes)


def cells(domain, rng):
    return rng.standard_normal(domain.grid.shape)


def _each_domain(build):
    cases = []
    for name, ndim in domains.ALL:
        domain = domains.make(name, ndim)
        cases.extend(build(domain, f"{name}-{ndim}d"))
    return cases


def _cases_velocity_in(kwargs=None):
    def build(domain, tag):
        return [Case(lambda rng, d=domain: (velocity(d, rng),), kwargs={"domain": domain, **(kwargs or {})},
                     id=tag)]
    return _each_domain(build)


def _cases_cells_in(extra=None):
    def build(domain, tag):
        out = [Case(lambda rng, d=domain: (cells(d, rng),), kwargs={"domain": domain}, id=tag)]
        return out
    return _each_domain(build)


def _laplacian_cases():
    def build(domain, tag):
        out = [Case(lambda rng, d=domain: (cells(d, rng),), kwargs={"domain": domain}, id=f"center-{tag}")]
        for c in range(domain.ndim):
            out.append(Case(lambda rng, d=domain, c=c: (rng.standard_normal(d.face_shape(c)),),
                            kwargs={"domain": domain, "location": c}, id=f"face{c}-{tag}"))
        return out
    return _each_domain(build)


def _center_to_face_cases():
    def build(domain, tag):
        return [Case(lambda rng, d=domain: (cells(d, rng),), kwargs={"domain": domain, "axis": a},
                     id=f"axis{a}-{tag}") for a in range(domain.ndim)]
    return _each_domain(build)


def _advection_cases():
    def build(domain, tag):
        dt = 0.6 * domains.H
        out = [Case(lambda rng, d=domain: (cells(d, rng), velocity(d, rng)),
                    kwargs={"domain": domain, "dt": dt}, id=f"center-{tag}")]
        for c in range(domain.ndim):
            out.append(Case(lambda rng, d=domain, c=c: (rng.standard_normal(d.face_shape(c)), velocity(d, rng)),
                            kwargs={"domain": domain, "dt": dt, "location": c}, id=f"face{c}-{tag}"))
        out.append(Case(lambda rng, d=domain: (cells(d, rng), velocity(d, rng)),
                        kwargs={"domain": domain, "dt": dt, "backtrace": "rk2"}, id=f"rk2-center-{tag}"))
        out.append(Case(lambda rng, d=domain: (rng.standard_normal(d.face_shape(0)), velocity(d, rng)),
                        kwargs={"domain": domain, "dt": dt, "location": 0, "backtrace": "rk2"},
                        id=f"rk2-face0-{tag}"))
        return out
    return _each_domain(build)


def _projection_cases():
    from fluidgrad.ops.pressure import PressureSolve

    def build(domain, tag):
        out = []
        for solver in ("auto", "cg", "multigrid", "jacobi"):
            settings = PressureSolve(solver, tolerance=1e-13, adjoint_tolerance=1e-14, iterations=20)
            direct = solver == "auto" and not domain.has_obstacles
            out.append(Case(lambda rng, d=domain: (velocity(d, rng),), kwargs={"domain": domain, "solve": settings},
                            id=f"{solver}-{tag}", rtol_dot=1e-12 if direct else 1e-10))
        return out
    return _each_domain(build)


def _project_fixed_cases():
    from fluidgrad.ops.pressure import PressureSolve
    settings = PressureSolve("auto", tolerance=1e-13, adjoint_tolerance=1e-14)

    def build(domain, tag):
        return [Case(lambda rng, d=domain: (velocity(d, rng), velocity(d, rng)),
                     kwargs={"domain": domain, "solve": settings}, id=tag, rtol_dot=1e-10)]
    return _each_domain(build)


def _diffusion_cases(rtol_dot=1e-10):
    def build(domain, tag):
        dt = 0.5 * domains.H
        out = [Case(lambda rng, d=domain: (cells(d, rng), 0.03), kwargs={"domain": domain, "dt": dt},
                    id=f"center-{tag}", rtol_dot=rtol_dot)]
        for c in range(domain.ndim):
            out.append(Case(lambda rng, d=domain, c=c: (rng.standard_normal(d.face_shape(c)), 0.02),
                            kwargs={"domain": domain, "dt": dt, "location": c}, id=f"face{c}-{tag}",
                            rtol_dot=rtol_dot))
        return out
    return _each_domain(build)


def _probe_cases():
    from fluidgrad.simulation import State
    domain = domains.make("no_slip", 2)
    return [Case(lambda rng: (State(velocity(domain, rng), cells(domain, rng), cells(domain, rng), 3),),
                 kwargs={"k": 0, "monitor": lambda k, g: None})]


def _half_cell_shift_cases():
    """Even and odd lengths (the even ones carry a Nyquist mode), along each axis."""
    return [Case(lambda rng, s=shape: (rng.standard_normal(s),), kwargs={"axis": axis}, id=f"{shape}-axis{axis}")
            for shape in ((8, 6), (7, 5), (4, 6, 5)) for axis in range(len(shape))]


CASES = {
    "centers_to_faces": _half_cell_shift_cases(),
    "faces_to_centers": _half_cell_shift_cases(),
    "centers_to_faces_bounded": _half_cell_shift_cases() + [
        Case(lambda rng: (rng.standard_normal((1, 4)),), kwargs={"axis": 0}, id="one-cell"),
        Case(lambda rng: (rng.standard_normal((2, 3)),), kwargs={"axis": 0}, id="two-cells")],
    "faces_to_centers_bounded": _half_cell_shift_cases() + [
        Case(lambda rng: (rng.standard_normal((2, 4)),), kwargs={"axis": 0}, id="one-cell")],
    "adjoint_probe": _probe_cases(),
    "vorticity_confinement": _each_domain(lambda domain, tag: [
        Case(lambda rng, d=domain: (velocity(d, rng), 0.7), kwargs={"domain": domain}, id=tag)]),
    "explicit_diffusion": _diffusion_cases(),
    "implicit_diffusion": _diffusion_cases(rtol_dot=1e-12),
    "project": _projection_cases(),
    "project_fixed": _project_fixed_cases(),
    "divergence": _cases_velocity_in(),
    "gradient": _cases_cells_in(),
    "laplacian": _laplacian_cases(),
    "face_to_center": _cases_velocity_in(),
    "center_to_face": _center_to_face_cases(),
    "vorticity": _cases_velocity_in(),
    "semi_lagrangian": _advection_cases(),
    "advect_velocity": _each_domain(lambda domain, tag: [
        Case(lambda rng, d=domain: (velocity(d, rng),),
             kwargs={"domain": domain, "dt": 0.6 * domains.H, "scheme": scheme}, id=f"{scheme}-{tag}")
        for scheme in SCHEMES]),
    "maccormack": _advection_cases(),
    "advect_state": _each_domain(lambda domain, tag: [
        Case(lambda rng, d=domain: ((cells(d, rng), cells(d, rng)), velocity(d, rng)),
             kwargs={"domain": domain, "dt": 0.6 * domains.H, "scheme": scheme}, id=f"{scheme}-{tag}")
        for scheme in SCHEMES]),
}
