#!/usr/bin/env python3
"""Cost of reverse mode relative to the forward computation, and tape overhead per node.

A chain of ``--ops`` elementwise/broadcasting array operations on ``--inputs`` arrays of
``--size`` elements each (10 x 10^5 = 10^6 inputs by default) is run:

* forward: plain numpy, no tape (the baseline, measured in the same run);
* gradient: ``fluidgrad.value_and_grad`` of the same code written with fluidgrad.numpy;

and the ratio gradient/forward is reported (target <= 3). The tape overhead per node is
measured on 1-element arrays, where the arithmetic is negligible: (taped forward +
backward time - plain time) / number of nodes. Medians of ``--repeat`` runs.
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy

import fluidgrad as fg
import fluidgrad.numpy as fnp


def chain(xp, xs, n_ops):
    """``n_ops`` array operations mixing the inputs ``xs``; returns a scalar."""
    h = xs[0]
    k = len(xs)
    for i in range(n_ops - 1):
        r = i % 5
        if r == 0:
            h = h + xs[(i // 5) % k]
        elif r == 1:
            h = xp.sin(h)
        elif r == 2:
            h = h * 0.5
        elif r == 3:
            h = xp.tanh(h)
        else:
            h = h - 0.1
    return xp.sum(h)


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(size, n_inputs, n_ops, repeat, dtype):
    rng = numpy.random.default_rng(0)
    xs = [rng.standard_normal(size).astype(dtype) for _ in range(n_inputs)]
    forward = best_of(lambda: chain(numpy, xs, n_ops), repeat)
    grad_fn = fg.value_and_grad(lambda xs: chain(fnp, xs, n_ops))
    gradient = best_of(lambda: grad_fn(xs), repeat)
    return forward, gradient


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=100_000, help="elements per array")
    p.add_argument("--inputs", type=int, default=10, help="number of input arrays")
    p.add_argument("--ops", type=int, default=1000, help="array operations in the chain")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = p.parse_args(argv)

    fwd, grad = measure(args.size, args.inputs, args.ops, args.repeat, args.dtype)
    tiny_fwd, tiny_grad = measure(1, args.inputs, args.ops, max(args.repeat, 5), args.dtype)
    overhead_us = (tiny_grad - tiny_fwd) / args.ops * 1e6

    rows = [
        ("forward (numpy, no tape)", f"{fwd * 1e3:10.1f} ms"),
        ("value_and_grad (tape + backward)", f"{grad * 1e3:10.1f} ms"),
        ("ratio gradient / forward", f"{grad / fwd:10.2f}   (target <= 3)"),
        ("tape overhead per node", f"{overhead_us:10.1f} us  (forward record + backward)"),
    ]
    print(f"chain of {args.ops} ops, {args.inputs} inputs x {args.size} elements, {args.dtype}, "
          f"median of {args.repeat}")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(json.dumps({"bench": "ad_chain", "ops": args.ops, "inputs": args.inputs, "size": args.size,
                      "dtype": args.dtype, "forward_s": fwd, "gradient_s": grad,
                      "ratio": grad / fwd, "overhead_us_per_node": overhead_us}))


if __name__ == "__main__":
    main()
