"""The solver-in-the-loop example (examples/solver_in_the_loop.py): its pieces, and its
test-sized variant (``--quick``) end to end."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "solver_in_the_loop.py"


@pytest.fixture(scope="module")
def sil():
    spec = importlib.util.spec_from_file_location("solver_in_the_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while it loads
    spec.loader.exec_module(module)
    return module


def scale_of(velocity, n):
    """The size of a divergence's round-off: max |u| / h."""
    return max(float(np.abs(u).max()) for u in velocity) / (2 * math.pi / n)


def test_downsampled_reference_is_divergence_free(sil):
    cfg = sil.Config()
    fine = sil.simulation(cfg.fine, cfg.dt / cfg.substeps, cfg, cfg.fine_advection)
    velocity = sil.initial_velocity(3, fine, cfg)  # the curl of a stream function
    assert np.abs(sil.divergence(velocity, sil.L / cfg.fine)).max() < 1e-12 * scale_of(velocity, cfg.fine)
    scale = scale_of(velocity, cfg.coarse)
    coarse = sil.downsample(velocity, cfg.fine // cfg.coarse)
    assert coarse[0].shape == coarse[1].shape == (cfg.coarse, cfg.coarse)
    assert np.abs(sil.divergence(coarse, sil.L / cfg.coarse)).max() < 1e-12 * scale
    # the flux through a coarse face is the sum of the fine fluxes through it
    assert math.isclose(coarse[0][3, 5] * 4, velocity[0][12, 20:24].sum(), rel_tol=1e-12)
    # a naive point sample is not divergence-free: the test can tell
    naive = (velocity[0][::4, ::4], velocity[1][::4, ::4])
    assert np.abs(sil.divergence(naive, sil.L / cfg.coarse)).max() > 1e-3 * scale


def test_wrapped_step_gradient_matches_finite_differences(sil):
    """d/dε of ⟨w, S(u + ε d)⟩ in float64 from torch autograd through fluidgrad.torch.wrap
    against central differences, for a batch of two velocities."""
    from fluidgrad.torch import wrap
    cfg = sil.Config()
    sim, step = sil.coarse_stepper(cfg, dtype=np.float64)
    rng = np.random.default_rng(7)
    u0 = np.stack([np.stack(sil.initial_velocity(s, sim, cfg)) for s in (11, 12)])
    w = rng.standard_normal(u0.shape)
    d = rng.standard_normal(u0.shape)
    f = wrap(step, batched=True)

    def objective(x):
        u, v = f((x[:, 0], x[:, 1]))
        return (torch.stack([u, v], 1) * torch.from_numpy(w)).sum()

    x = torch.from_numpy(u0.copy()).requires_grad_(True)
    objective(x).backward()
    directional = float((x.grad * torch.from_numpy(d)).sum())
    eps = 1e-6
    with torch.no_grad():
        up, down = (float(objective(torch.from_numpy(u0 + sign * eps * d))) for sign in (1, -1))
    fd = (up - down) / (2 * eps)
    assert np.isfinite(directional) and abs(directional) > 1.0
    assert directional == pytest.approx(fd, rel=1e-5)


def test_quick_variant(sil, tmp_path):
    """The test-sized run: the reference is divergence-free, the gradients through the
    wrapped solver are nonzero and finite, training lowers the unrolled corrector's
    rollout loss, and on the held-out initial conditions both correctors beat the
    uncorrected solver. Over seeds 0-5 (measured): unrolled / none 0.39-0.47, one-step /
    none 0.40-0.47, unrolled / one-step 0.94-1.00, probe loss after / before 0.06-0.08."""
    cfg = sil.Config(**sil.QUICK)
    summary = sil.run(cfg, tmp_path, log=lambda *a: None)
    assert summary["max_divergence_downsampled"] < 1e-12
    unrolled = summary["training"]["unrolled"]
    assert np.isfinite(unrolled["first_grad_norm"]) and unrolled["first_grad_norm"] > 1e-4
    assert unrolled["probe_loss_after"] < 0.2 * unrolled["probe_loss_before"]
    err = summary["error_at_end"]
    assert err["unrolled"] < 0.6 * err["none"]
    assert err["one-step"] < 0.65 * err["none"]
    assert err["unrolled"] < 1.05 * err["one-step"]
    curve = summary["curves"]["none"]
    assert curve[0] == 0 and all(b > a for a, b in zip(curve, curve[1:]))  # errors accumulate
    assert (tmp_path / "solver_in_the_loop.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "solver_in_the_loop.json").read_text())
    assert saved["error_at_end"] == err and saved["seeds"]["eval_ic"] == summary["seeds"]["eval_ic"]
    assert not set(saved["seeds"]["train_ic"]) & set(saved["seeds"]["eval_ic"])  # held out
