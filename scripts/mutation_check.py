#!/usr/bin/env python3
"""A small mutation check: one-line bugs that the named tests must catch.

Each entry of :data:`MUTATIONS` names a file under ``src/``, an exact snippet of it
(found exactly once; ``tests/test_mutation_check.py`` keeps the list from rotting), its
replacement, and the pytest arguments that must then fail. ``src/`` is copied once into
a temporary folder; each mutation is applied there, the tests are run with ``PYTHONPATH``
pointing at the copy, and the file is restored before the next one. The real tree is
never written (bytecode and pytest caches off, the copy removed even on Ctrl-C).

Before the mutations the same tests run on the unmutated copy and must pass (else a
"caught" would mean nothing). Mutations in plain Python run with ``FLUIDGRAD_NUMBA=0``;
those marked ``numba`` compile the kernels in the copy (cached there across mutations).

Prints a table (mutation, caught, seconds) and one JSON line; exits 1 if a mutation
survives or the unmutated tests fail.

    python scripts/mutation_check.py [--only NAME ...] [--no-baseline] [--timeout S]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    file: str           # relative to src/
    original: str       # exact snippet, found exactly once in the file
    replacement: str
    tests: tuple        # pytest arguments (files, node ids, -k expressions)
    numba: bool = False  # run with the compiled kernels on


MUTATIONS = [
    Mutation("curl-y-wrong-index-pair", "fluidgrad/ops/stencils.py",
             "((0, 2), (2, 0))", "((0, 2), (2, 1))", ("tests/ops/test_stencils.py",)),
    Mutation("wall-ghost-drops-wall-velocity", "fluidgrad/ops/stencils.py",
             "ghost_hi = hi[0] * last + (0 if homogeneous else hi[1])", "ghost_hi = hi[0] * last",
             ("tests/ops/test_stencils.py",)),
    Mutation("maximum-full-cotangent-at-ties", "fluidgrad/ad/ops/arith.py",
             "return ((x > y) + 0.5 * (x == y)).astype(dtype_of(like))", "return (x >= y).astype(dtype_of(like))",
             ("tests/ad/test_ties.py",)),
    Mutation("clip-full-cotangent-at-bound", "fluidgrad/ad/ops/arith.py",
             "share = share * _share(x, lo, like)", "share = share * (_raw(x) >= _raw(lo))",
             ("tests/ad/test_ties.py",)),
    Mutation("adam-no-bias-correction-m", "fluidgrad/optimize/optimizers.py",
             "m_hat = m / (1 - self.beta1 ** t)", "m_hat = m",
             ("tests/test_optimize.py::test_adam_follows_the_textbook_trajectory",)),
    Mutation("adam-no-bias-correction-v", "fluidgrad/optimize/optimizers.py",
             "v_hat = v / (1 - self.beta2 ** t)", "v_hat = v",
             ("tests/test_optimize.py::test_adam_follows_the_textbook_trajectory",)),
    Mutation("scipy-resume-runs-too-many-iterations", "fluidgrad/optimize/loop.py",
             "problem.value_and_grad, iterations - start, finish_iteration",
             "problem.value_and_grad, iterations, finish_iteration",
             ("tests/test_optimize.py::test_scipy_lbfgsb_resumed_runs_to_the_requested_iteration",)),
    Mutation("negative-vorticity-confinement-accepted", "fluidgrad/scenario.py",
             '"physics.vorticity_confinement",\n                           nonnegative=True',
             '"physics.vorticity_confinement",\n                           nonnegative=False',
             ("tests/test_scenario_errors.py",)),
    Mutation("difference-transpose-sign-flip", "fluidgrad/ops/stencils.py",
             "return xp.roll(g, 1, axis) - g", "return g - xp.roll(g, 1, axis)",
             ("tests/ad/test_primitives.py", "-k", "divergence or laplacian")),
    Mutation("gradient-transpose-sign-flip", "fluidgrad/ops/stencils.py",
             "term = (gd - xp_of(gd).roll(gd, -1, d)) / domain.dx",
             "term = (xp_of(gd).roll(gd, -1, d) - gd) / domain.dx",
             ("tests/ad/test_primitives.py", "-k", "gradient")),
    Mutation("minimum-vjp-gives-x-the-other-share", "fluidgrad/ad/ops/arith.py",
             "minimum.defvjp(lambda g, ans, x, y: unbroadcast(g * _share(y, x, g), x),",
             "minimum.defvjp(lambda g, ans, x, y: unbroadcast(g * _share(x, y, g), x),",
             ("tests/ad/test_primitives.py", "-k", "minimum")),
    Mutation("row-blocks-strip-misses-a-row", "fluidgrad/ops/compiled.py",
             "blocks[1, k] = cuts[k + 1] - strip, cuts[k + 1]",
             "blocks[1, k] = cuts[k + 1] - strip + 1, cuts[k + 1]",
             ("tests/ops/test_fused.py::test_parallel_vjp_equals_the_serial_one",), numba=True),
    Mutation("parallel-vjp-skips-the-strips", "fluidgrad/ops/fused_advection_2d.py",
             "ib, fb = _buffers(blocks.shape[1], 1, g.shape[1])\n    for colour in range(2):",
             "ib, fb = _buffers(blocks.shape[1], 1, g.shape[1])\n    for colour in range(1):",
             ("tests/ops/test_fused.py::test_parallel_vjp_equals_the_serial_one",), numba=True),
]


def apply(text: str, mutation: Mutation) -> str:
    """``text`` with the mutation's snippet replaced (ValueError unless found exactly once)."""
    count = text.count(mutation.original)
    if count != 1:
        raise ValueError(f"{mutation.name}: the snippet occurs {count} times in {mutation.file}, not once")
    return text.replace(mutation.original, mutation.replacement)


def _pytest(src: Path, args, numba: bool, timeout: float):
    """Run pytest on ``args`` against the source copy ``src``: (return code or None on a
    timeout, seconds, output tail)."""
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1",
               FLUIDGRAD_NUMBA="1" if numba else "0")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, rc = proc.communicate()[0], None
    except BaseException:  # Ctrl-C: stop the tests (their whole group), then give up
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return rc, time.perf_counter() - start, out[-3000:]


def _baseline_groups(mutations):
    """The unmutated runs: each distinct (tests, numba) once."""
    return list(dict.fromkeys((m.tests, m.numba) for m in mutations))


def run(mutations, *, baseline=True, timeout=600.0):
    results, failures = [], []
    with tempfile.TemporaryDirectory(prefix="fluidgrad-mutation-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        originals = {m.file: (src / m.file).read_text() for m in mutations}
        for m in mutations:  # all snippets first: a stale list fails before any test runs
            apply(originals[m.file], m)
        if baseline:
            for tests, numba in _baseline_groups(mutations):
                rc, seconds, out = _pytest(src, tests, numba, timeout)
                print(f"unmutated {' '.join(tests)}{' (numba)' if numba else ''}: "
                      f"{'pass' if rc == 0 else f'FAIL (rc={rc})'} in {seconds:.1f} s", flush=True)
                if rc != 0:
                    failures.append({"tests": list(tests), "rc": rc, "output": out})
                    print(out)
        for m in mutations:
            path = src / m.file
            stat = path.stat()
            path.write_text(apply(originals[m.file], m))
            try:
                rc, seconds, out = _pytest(src, m.tests, m.numba, timeout)
            finally:  # restore the text and its time stamp (numba's cache checks it)
                path.write_text(originals[m.file])
                os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            caught = rc == 1  # some test failed (0: all passed; None: timeout; others: errors)
            results.append({"mutation": m.name, "caught": caught, "rc": rc, "seconds": round(seconds, 1)})
            print(f"  {m.name}: {'caught' if caught else f'SURVIVED (rc={rc})'} in {seconds:.1f} s", flush=True)
            if not caught:
                print(out)
    return results, failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated runs")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run")
    args = parser.parse_args(argv)
    mutations = MUTATIONS
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTATIONS})
        if unknown:
            parser.error(f"unknown mutation(s): {', '.join(unknown)}")
        mutations = [m for m in MUTATIONS if m.name in args.only]
    try:
        results, failures = run(mutations, baseline=not args.no_baseline, timeout=args.timeout)
    except KeyboardInterrupt:
        print("interrupted; the source tree was not touched", file=sys.stderr)
        return 130
    width = max(len(r["mutation"]) for r in results)
    print(f"\n{'mutation':<{width}}  caught  seconds")
    for r in results:
        print(f"{r['mutation']:<{width}}  {'yes' if r['caught'] else 'NO':<6}  {r['seconds']:7.1f}")
    survived = [r["mutation"] for r in results if not r["caught"]]
    print(json.dumps({"mutations": len(results), "caught": len(results) - len(survived), "survived": survived,
                      "baseline_failures": [f["tests"] for f in failures], "results": results}))
    return 1 if survived or failures else 0


if __name__ == "__main__":
    sys.exit(main())
