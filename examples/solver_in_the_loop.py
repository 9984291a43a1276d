"""Solver-in-the-loop (Um et al., NeurIPS 2020) at small scale, with fluidgrad inside a
torch training loop.

A coarse 32² periodic decaying-turbulence simulation ``S`` (fluidgrad) is corrected after
every step by a small periodic CNN ``C_θ``::

    s̃_{t+1} = S(s̃_t) + C_θ(S(s̃_t))

so that it tracks a 128² reference (the same solver, 4× finer in space and time)
downsampled to 32². Three models, trained with the same budget (the same number of
optimizer updates, batch size and learning-rate schedule):

* ``none``     — no correction (the coarse solver alone);
* ``one-step`` — the corrector trained on single steps taken from the reference,
  ``S(ref_t) → ref_{t+1} − S(ref_t)``: no gradient through the solver ("NON");
* ``unrolled`` — the corrector trained on rollouts of 1 → 2 → 4 → 8 → 16 corrected steps
  from ``ref_t``, the loss gradient flowing back through every coarse fluidgrad step via
  :func:`fluidgrad.torch.wrap` ("SOL").

They are evaluated on held-out initial conditions: the relative L2 error of the velocity
against the downsampled reference after each of 32 coarse steps (mean over the held-out
initial conditions). The script prints a table and one JSON line, and writes a plot of
the error against the step and the JSON (``--out``).

    python examples/solver_in_the_loop.py                 # the full run (~2.5 min, one core)
    python examples/solver_in_the_loop.py --quick         # the test-sized variant (< 1 min)
    python examples/solver_in_the_loop.py --seed 1 --out results/

Needs torch (CPU is enough). Threads: ``--threads`` (default 1) for torch and for
fluidgrad's kernels: at 32² the convolutions and the solver's kernels are too small to
gain from a second thread, and beside other busy processes two threads ran 3-10× slower.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

L = 2 * math.pi  # the periodic box is [0, 2π]²


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that sets a run's numbers (the JSON repeats it)."""

    fine: int = 128            # reference resolution
    coarse: int = 32           # the corrected solver's resolution
    substeps: int = 4          # fine steps per coarse step (fine dt = dt / substeps)
    dt: float = 0.04           # coarse time step
    viscosity: float = 1e-3
    k_peak: float = 4.0        # the initial energy spectrum peaks at this wavenumber
    amplitude: float = 1.0     # initial RMS speed
    spinup: int = 20           # coarse steps of fine simulation before t = 0 (small scales develop)
    coarse_advection: str = "semi_lagrangian"
    fine_advection: str = "maccormack"
    n_train: int = 16          # training initial conditions
    n_eval: int = 8            # held-out initial conditions
    train_steps: int = 48      # coarse steps of each training trajectory
    eval_steps: int = 32       # coarse steps evaluated
    width: int = 16            # CNN channels
    layers: int = 4            # CNN conv layers (5×5, circular padding)
    output: str = "stream"     # the CNN predicts a stream function (divergence-free correction)
    curriculum: tuple = (1, 2, 4, 8, 16)   # unrolled steps of each stage
    updates: tuple = (160, 160, 160, 160, 160)  # optimizer updates in each stage
    batch: int = 8
    lr: float = 1e-3
    lr_final: float = 1e-4     # cosine decay from lr to lr_final over all updates
    clip: float = 1.0          # gradient-norm clipping
    seed: int = 0


#: the test-sized variant: fewer and shorter trajectories, a smaller CNN, a shorter curriculum;
#: the reference by the coarse solver's scheme too (one scheme's kernels to compile, not two)
QUICK = dict(n_train=4, n_eval=2, train_steps=10, eval_steps=8, spinup=10, width=16, layers=3,
             curriculum=(1, 2, 4), updates=(40, 40, 40), batch=4, fine_advection="semi_lagrangian")


# -- the physics ----------------------------------------------------------------------------

def simulation(n, dt, cfg, advection, dtype=np.float64):
    from fluidgrad.boundaries import Boundaries, Domain
    from fluidgrad.grid import Grid
    from fluidgrad.ops import PressureSolve
    from fluidgrad.simulation import Physics, Simulation
    return Simulation(Domain(Grid((n, n), (L, L)), Boundaries.periodic(2)), dt=dt,
                      physics=Physics(viscosity=cfg.viscosity), advection=advection,
                      pressure=PressureSolve(solver="fft"), dtype=dtype)


def initial_velocity(seed, sim, cfg):
    """A random divergence-free MAC velocity: the curl of a Gaussian random stream
    function with energy spectrum ``E(k) ∝ k⁴ exp(-2 (k/k_peak)²)``, scaled to RMS speed
    ``amplitude``."""
    from fluidgrad.potential import velocity_from_potential
    n = sim.domain.grid.shape[0]
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(n, 1.0 / n)
    kk = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    # E(k) ~ 2π k |k ψ_k|²  ⇒  |ψ_k| ~ sqrt(E(k) / k³)
    spectrum = np.where(kk > 0, np.sqrt(kk ** 4 * np.exp(-2 * (kk / cfg.k_peak) ** 2) / np.maximum(kk, 1) ** 3), 0)
    psi = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * spectrum))
    u = velocity_from_potential((psi,), sim.domain)
    rms = math.sqrt(sum(float((a ** 2).mean()) for a in u) / 2)
    return tuple(np.asarray(a) * (cfg.amplitude / rms) for a in u)


def downsample(velocity, factor):
    """A MAC velocity on a grid ``factor``× coarser: each coarse face carries the mean of
    the fine faces that tile it (the fine faces at the same position), so the flux through
    every coarse face, hence every coarse cell's divergence, is exact."""
    u, v = velocity
    nx, ny = u.shape
    U = u[::factor].reshape(nx // factor, ny // factor, factor).mean(-1)
    V = v[:, ::factor].reshape(nx // factor, factor, ny // factor).mean(1)
    return U, V


def divergence(velocity, h):
    """The cell divergence of a periodic MAC velocity."""
    u, v = velocity
    return (np.roll(u, -1, 0) - u + np.roll(v, -1, 1) - v) / h


def reference(seeds, steps, cfg):
    """``(len(seeds), steps + 1, 2, coarse, coarse)``: the fine simulation from each seed's
    initial condition, after ``spinup``, sampled every coarse step and downsampled."""
    fine = simulation(cfg.fine, cfg.dt / cfg.substeps, cfg, cfg.fine_advection)
    factor = cfg.fine // cfg.coarse
    out = np.empty((len(seeds), steps + 1, 2, cfg.coarse, cfg.coarse))
    worst_div = 0.0
    for i, seed in enumerate(seeds):
        state = fine.initial_state(velocity=initial_velocity(seed, fine, cfg))
        for _ in range(cfg.spinup * cfg.substeps):
            state = fine.step(state)
        for t in range(steps + 1):
            if t:
                for _ in range(cfg.substeps):
                    state = fine.step(state)
            coarse = downsample(state.velocity, factor)
            out[i, t] = coarse
            worst_div = max(worst_div, float(np.abs(divergence(coarse, L / cfg.coarse)).max()))
    return out, worst_div


# -- the corrector --------------------------------------------------------------------------

def make_corrector(cfg, scale):
    """A small CNN (5×5 convolutions with circular padding) from the velocity (2 channels)
    to a velocity correction (float64 in and out, float32 inside): with
    ``output='stream'`` it predicts a stream function on the grid nodes whose discrete
    curl is the correction (divergence-free on the MAC grid)."""
    import torch
    from torch import nn

    class Corrector(nn.Module):
        def __init__(self):
            super().__init__()
            out = 1 if cfg.output == "stream" else 2
            chans = [2] + [cfg.width] * (cfg.layers - 1) + [out]
            self.convs = nn.ModuleList(nn.Conv2d(a, b, 5, padding=2, padding_mode="circular")
                                       for a, b in zip(chans[:-1], chans[1:]))
            nn.init.zeros_(self.convs[-1].weight)  # start as "no correction"
            nn.init.zeros_(self.convs[-1].bias)
            self.scale = scale

        def forward(self, x):  # x: (B, 2, n, n) — u and v face arrays as channels
            dtype = x.dtype  # the solver's float64; the CNN computes in float32
            h = x.float() / self.scale
            for conv in self.convs[:-1]:
                h = torch.relu(conv(h))
            h = self.convs[-1](h).to(dtype) * self.scale
            if cfg.output != "stream":
                return h
            psi = h[:, 0]  # u = ∂ψ/∂y, v = -∂ψ/∂x (node differences, as fluidgrad.potential)
            return torch.stack([torch.roll(psi, -1, 2) - psi, psi - torch.roll(psi, -1, 1)], 1)

    return Corrector()


def learning_rate(cfg, k, total):
    return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * k / max(total - 1, 1)))


def coarse_stepper(cfg, dtype=np.float64):
    """``(sim, step)``: the coarse simulation and ``step(velocity) -> velocity`` (a
    fluidgrad-differentiable function of the tuple of face arrays)."""
    sim = simulation(cfg.coarse, cfg.dt, cfg, cfg.coarse_advection, dtype=dtype)
    blank = sim.zeros_state()

    def step(velocity):
        return sim.step(blank.replace(velocity=tuple(velocity))).velocity

    return sim, step


def train_one_step(model, data, cfg, rng, step):
    """The one-step ("NON") corrector: regress ``ref_{t+1} − S(ref_t)`` from ``S(ref_t)``;
    the solver's outputs are precomputed, nothing is differentiated through it."""
    import torch
    n_ic, T = data.shape[:2]
    stepped = np.empty_like(data[:, :-1])
    for i in range(n_ic):
        for t in range(T - 1):
            stepped[i, t] = step(tuple(data[i, t]))
    s = torch.from_numpy(stepped)
    target = torch.from_numpy(data[:, 1:] - stepped)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    total, losses = sum(cfg.updates), []
    for k in range(total):
        for g in opt.param_groups:
            g["lr"] = learning_rate(cfg, k, total)
        i = rng.integers(0, n_ic, cfg.batch)
        t = rng.integers(0, T - 1, cfg.batch)
        loss = torch.mean((model(s[i, t]) - target[i, t]) ** 2)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def unrolled_loss(model, wrapped_step, data, i, t, n):
    """The mean squared error over an ``n``-step corrected rollout from ``ref[i, t]``
    (a batch), differentiable through the solver."""
    import torch
    x = torch.from_numpy(data[i, t])
    loss = 0.0
    for k in range(1, n + 1):
        u, v = wrapped_step((x[:, 0], x[:, 1]))
        s = torch.stack([u, v], 1)
        x = s + model(s)
        loss = loss + torch.mean((x - torch.from_numpy(data[i, t + k])) ** 2)
    return loss / n


def train_unrolled(model, data, cfg, rng, step, record=None):
    """The solver-in-the-loop ("SOL") corrector: the curriculum of rollout lengths, the
    gradient through every coarse step by :func:`fluidgrad.torch.wrap`."""
    import torch
    from fluidgrad.torch import wrap
    wrapped = wrap(step, batched=True)
    n_ic, T = data.shape[:2]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    total, k, losses = sum(cfg.updates), 0, []
    probe_n = cfg.curriculum[-1]  # a fixed batch at the longest rollout, before and after training
    probe_rng = np.random.default_rng([cfg.seed, 1])  # its own stream: the training batches stay as they are
    probe = (probe_rng.integers(0, n_ic, cfg.batch), probe_rng.integers(0, T - probe_n, cfg.batch))
    if record is not None:
        with torch.no_grad():
            record["probe_loss_before"] = float(unrolled_loss(model, wrapped, data, *probe, probe_n))
    for n, updates in zip(cfg.curriculum, cfg.updates):
        for _ in range(updates):
            for g in opt.param_groups:
                g["lr"] = learning_rate(cfg, k, total)
            i = rng.integers(0, n_ic, cfg.batch)
            t = rng.integers(0, T - n, cfg.batch)
            loss = unrolled_loss(model, wrapped, data, i, t, n)
            opt.zero_grad()
            loss.backward()
            if record is not None and k == 0:
                record["first_grad_norm"] = float(torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters())))
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            losses.append((n, float(loss.detach())))
            k += 1
    if record is not None:
        with torch.no_grad():
            record["probe_loss_after"] = float(unrolled_loss(model, wrapped, data, *probe, probe_n))
    return losses


def evaluate(model, data, steps, step):
    """``(steps + 1,)``: the relative L2 velocity error against ``data`` (held-out
    reference) after each corrected coarse step from ``data[:, 0]``, mean over the initial
    conditions (``model=None``: no correction)."""
    import torch
    x = data[:, 0]
    errors = np.zeros((len(data), steps + 1))
    for k in range(1, steps + 1):
        s = np.stack([np.stack(step(tuple(xi))) for xi in x])
        if model is not None:
            with torch.no_grad():
                s = s + model(torch.from_numpy(s)).numpy()
        x = s
        ref = data[:, k]
        errors[:, k] = np.sqrt(((x - ref) ** 2).sum((1, 2, 3)) / (ref ** 2).sum((1, 2, 3)))
    return errors.mean(0)


# -- the run ----------------------------------------------------------------------------------

def run(cfg: Config, out: Path | None = None, threads: int = 1, log=print) -> dict:
    """Generate the reference, train both correctors, evaluate the three models on the
    held-out initial conditions; write the plot and the JSON to ``out`` (if given) and
    return the summary. ``threads``: torch's and fluidgrad's kernels' (restored after)."""
    import torch
    from fluidgrad.ops import compiled
    torch_threads = torch.get_num_threads()
    # fluidgrad first: numba's OpenMP thread pool is torch's, and setting numba's count
    # (as fluidgrad's first kernel call does) sets torch's too
    compiled.set_threads(threads)
    torch.set_num_threads(threads)
    try:
        return _run(cfg, out, threads, log)
    finally:
        compiled.set_threads(os.environ.get("FLUIDGRAD_THREADS") or "auto")
        torch.set_num_threads(torch_threads)


def _run(cfg, out, threads, log):
    import torch
    torch.manual_seed(cfg.seed)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    train_seeds = [1000 * cfg.seed + i for i in range(cfg.n_train)]
    eval_seeds = [1000 * cfg.seed + 500 + i for i in range(cfg.n_eval)]
    t0 = time.perf_counter()
    train, div_train = reference(train_seeds, cfg.train_steps, cfg)
    held, div_eval = reference(eval_seeds, cfg.eval_steps, cfg)
    ref_seconds = time.perf_counter() - t0
    log(f"reference: {cfg.n_train} + {cfg.n_eval} initial conditions at {cfg.fine}² → {cfg.coarse}², "
        f"{ref_seconds:.1f} s; max |div| of the downsampled velocity {max(div_train, div_eval):.2e}")
    scale = float(np.sqrt((train[:, 0] ** 2).mean()))
    _, step = coarse_stepper(cfg)

    results = {}
    rng_data = np.random.default_rng(cfg.seed)
    models = {}
    for name in ("one-step", "unrolled"):
        torch.manual_seed(cfg.seed)  # the same initial weights for both correctors
        model = make_corrector(cfg, scale)
        rng = np.random.default_rng(rng_data.integers(2 ** 32))
        record = {}
        t0, c0 = time.perf_counter(), time.process_time()
        if name == "one-step":
            losses = train_one_step(model, train, cfg, rng, step)
            first, last = np.mean(losses[:10]), np.mean(losses[-10:])
        else:
            losses = train_unrolled(model, train, cfg, rng, step, record)
            last_n = cfg.curriculum[-1]
            at_n = [l for n, l in losses if n == last_n]
            first, last = np.mean(at_n[:10]), np.mean(at_n[-10:])
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        models[name] = model
        results[name] = dict(train_seconds=round(seconds, 1), train_cpu_seconds=round(cpu, 1),
                             loss_first=float(first), loss_last=float(last), **record)
        log(f"trained {name}: {sum(cfg.updates)} updates in {seconds:.1f} s ({cpu:.1f} s CPU), "
            f"loss {first:.3g} → {last:.3g}")
    params = sum(p.numel() for p in models["unrolled"].parameters())

    curves = {"none": evaluate(None, held, cfg.eval_steps, step)}
    for name, model in models.items():
        curves[name] = evaluate(model, held, cfg.eval_steps, step)
    final = {name: float(c[-1]) for name, c in curves.items()}
    total, total_cpu = time.perf_counter() - t_start, time.process_time() - cpu_start

    log(f"\nheld-out relative L2 velocity error ({cfg.n_eval} initial conditions, mean)")
    marks = sorted({1, cfg.eval_steps // 4, cfg.eval_steps // 2, cfg.eval_steps})
    log("  step " + "".join(f"{m:>9d}" for m in marks))
    for name, c in curves.items():
        log(f"  {name:<9}" + "".join(f"{c[m]:9.4f}" for m in marks))
    ratio_none = final["unrolled"] / final["none"]
    ratio_one = final["unrolled"] / final["one-step"]
    log(f"  unrolled / none {ratio_none:.3f}, unrolled / one-step {ratio_one:.3f}; "
        f"total {total:.0f} s ({total_cpu:.0f} s CPU)")

    summary = {
        "error_at_end": final, "eval_steps": cfg.eval_steps,
        "ratio_unrolled_none": ratio_none, "ratio_unrolled_one_step": ratio_one,
        "train_seconds": {k: v["train_seconds"] for k, v in results.items()},
        "train_cpu_seconds": {k: v["train_cpu_seconds"] for k, v in results.items()},
        "reference_seconds": round(ref_seconds, 1), "total_seconds": round(total, 1),
        "total_cpu_seconds": round(total_cpu, 1),
        "training": results, "max_divergence_downsampled": max(div_train, div_eval),
        "seeds": {"run": cfg.seed, "train_ic": train_seeds, "eval_ic": eval_seeds},
        "params": params, "threads": threads, "torch_threads": torch.get_num_threads(), "machine": _machine(),
        "curves": {k: [round(float(x), 6) for x in c] for k, c in curves.items()},
        "config": dataclasses.asdict(cfg),
    }
    log(json.dumps({k: summary[k] for k in ("error_at_end", "ratio_unrolled_none", "ratio_unrolled_one_step",
                                             "train_seconds", "train_cpu_seconds", "total_seconds",
                                             "total_cpu_seconds", "seeds", "params")}))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "solver_in_the_loop.json").write_text(json.dumps(summary, indent=1) + "\n")
        plot(curves, summary, out / "solver_in_the_loop.png")
    return summary


def plot(curves, summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cfg = summary["config"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    labels = {"none": "no correction", "one-step": "one-step corrector (no solver gradient)",
              "unrolled": "unrolled corrector (gradient through fluidgrad)"}
    for name, c in curves.items():
        ax.plot(np.arange(len(c)), c, label=f"{labels[name]} ({c[-1]:.3f})",
                lw=2 if name == "unrolled" else 1.5)
    ax.set_xlabel(f"coarse step (dt = {cfg['dt']})")
    ax.set_ylabel("relative L2 velocity error")
    ax.set_title(f"Solver-in-the-loop: {cfg['coarse']}² corrected vs {cfg['fine']}² reference\n"
                 f"{cfg['n_eval']} held-out initial conditions, trained on {cfg['n_train']}", fontsize=10)
    ax.set_xlim(0, len(next(iter(curves.values()))) - 1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    t = summary["train_seconds"]
    ax.text(0.99, 0.02, f"training: one-step {t['one-step']:.0f} s, unrolled {t['unrolled']:.0f} s\n"
            f"seed {summary['seeds']['run']}, {summary['params']} parameters",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.35")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _machine():
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
        import machine
        return machine.headline()
    except Exception:
        import platform
        return platform.processor() or platform.machine()
    finally:
        sys.path.pop(0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the test-sized variant (< 1 min)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial conditions, weights and batches")
    p.add_argument("--out", type=Path, default=None, help="folder for solver_in_the_loop.{png,json}")
    p.add_argument("--threads", type=int, default=1,
                   help="torch's and fluidgrad's threads (default 1: a 32² problem gains nothing from more)")
    args = p.parse_args(argv)
    cfg = Config(seed=args.seed, **(QUICK if args.quick else {}))
    run(cfg, args.out, args.threads)


if __name__ == "__main__":
    main()
