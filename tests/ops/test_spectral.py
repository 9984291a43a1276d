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


@pytest.mark.parametrize("name, ndim", [pytest.param(n, d, id=f"{n}-{d}d") for n, d in domains.ALL if n != "obstacle"])
def test_spectral_solves_of_device_arrays_run_through_the_device_fft(name, ndim, monkeypatch):
    """On device arrays (the strict stand-in for cupy, which refuses host conversion) the
    solve runs through the arrays' own FFT module (cupyx.scipy.fft's stand-in, chosen by the
    array, not by a setting), types 2 and 3 only, and equals the host solve."""
    import types

    import strict_device
    domain = domains.make(name, ndim)
    b = onp.random.default_rng(4).standard_normal(domain.grid.shape)
    want = spectral.solve(domain, b)
    used = []
    device_fft = strict_device.cupyx.scipy.fft

    class Recording(types.ModuleType):
        def __getattr__(self, attr):
            used.append(attr)
            return getattr(device_fft, attr)

    monkeypatch.setattr(strict_device.cupyx.scipy, "fft", Recording(device_fft.__name__))
    with strict_device.installed() as cupy:
        got = spectral.solve(domain, cupy.asarray(b))
        assert isinstance(got, cupy.ndarray)
        got = cupy.asnumpy(got)
    assert used and set(used) <= {"rfftn", "irfftn", "dct", "idct", "dst", "idst"}, used
    onp.testing.assert_allclose(got, want, atol=1e-12 * onp.abs(want).max())
