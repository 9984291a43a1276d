"""Fast-transform solves: the FFT-based type-4 transforms (used where the backend has
none, e.g. cupy) equal scipy's, and solves through them are unchanged."""

import numpy as onp
import pytest
import scipy.fft

from fluidgrad.ops import spectral
from fluidgrad.ops.diffusion import implicit_diffusion
from fluidgrad.ops.pressure import PressureSolve, project

from ops import domains


@pytest.mark.parametrize("name", ["dct", "dst"])
@pytest.mark.parametrize("n, axis", [(7, 0), (16, 1), (5, 1)])
def test_fft_based_type4_transforms_match_scipy(name, n, axis):
    x = onp.random.default_rng(n).standard_normal((n, 6) if axis == 0 else (4, n))
    expected = getattr(scipy.fft, name)(x, type=4, axis=axis, norm="ortho")
    onp.testing.assert_allclose(spectral.type4(x, axis, sine=(name == "dst")), expected, atol=1e-13)
    x32 = x.astype(onp.float32)
    assert spectral.type4(x32, axis).dtype == onp.float32


def test_solves_through_the_fft_based_type4_are_unchanged(monkeypatch):
    domain = domains.make("inflow_outflow", 2)  # Neumann/Dirichlet axis: DCT-IV for the pressure
    rng = onp.random.default_rng(0)
    u = tuple(rng.standard_normal(s) for s in domain.velocity_shapes)
    q = rng.standard_normal(domain.face_shape(1))
    reference = project(u, domain=domain, solve=PressureSolve("dct"))
    diffused = implicit_diffusion(q, 0.05, dt=0.1, domain=domain, location=1)
    monkeypatch.setitem(spectral._HAS_TYPE4, "scipy.fft", False)
    via_fft = project(u, domain=domain, solve=PressureSolve("dct"))
    for a, b in zip(via_fft[0], reference[0], strict=True):
        onp.testing.assert_allclose(a, b, atol=1e-12)
    onp.testing.assert_allclose(implicit_diffusion(q, 0.05, dt=0.1, domain=domain, location=1), diffused,
                                atol=1e-12)
