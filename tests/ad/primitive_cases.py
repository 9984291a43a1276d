"""Test inputs for every registered differentiable primitive.

``CASES[name]`` is a list of ``Case``. The test suite runs the dot-product and
finite-difference checks on each one, and fails if a registered primitive has no entry
here, so no primitive can escape testing. Inputs are float64 and away from kinks.
"""

from dataclasses import dataclass, field

import numpy as onp


@dataclass
class Case:
    make: object                 # rng -> tuple of positional arguments
    kwargs: dict = field(default_factory=dict)
    argnums: tuple = None        # default: every floating-point argument
    id: str = ""
    rtol_dot: float = 1e-10      # dot-product test tolerance (1e-12 for direct solves)


def normal(*shape):
    return lambda rng: rng.standard_normal(shape)


def positive(*shape):
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def unit(*shape):
    return lambda rng: rng.uniform(-0.8, 0.8, shape)


def nan_holes(*shape):
    """Normal numbers with every third one NaN (for the NaN-ignoring fmax/fmin)."""
    def make(rng):
        x = rng.standard_normal(shape)
        x.reshape(-1)[::3] = onp.nan
        return x
    return make


def args(*makers):
    return lambda rng: tuple(m(rng) if callable(m) else m for m in makers)


def unary(maker=normal(3, 4)):
    return [Case(args(maker), id="matrix"), Case(lambda rng: (float(maker(rng).ravel()[0]),), id="scalar")]


def binary(left=normal, right=normal):
    return [Case(args(left(3, 4), right(3, 4)), id="same-shape"),
            Case(args(left(3, 1), right(1, 4)), id="broadcast-both"),
            Case(args(left(2, 3, 4), right(4)), id="broadcast-rank"),
            Case(lambda rng: (left(3)(rng), 1.5), argnums=(0,), id="python-scalar")]


def _distinct(*shape):
    """Values with no ties (max/min have a unique winner)."""
    return lambda rng: rng.permutation(int(onp.prod(shape))).reshape(shape) * 0.1 + rng.uniform(0, 0.01, shape)


CASES = {
    "astype": [Case(lambda rng: (rng.standard_normal((3, 4)), onp.float64), argnums=(0,))],
    "negative": unary(), "exp": unary(), "expm1": unary(), "exp2": unary(),
    "sin": unary(), "cos": unary(), "tan": unary(unit(3, 4)), "sinh": unary(), "cosh": unary(),
    "tanh": unary(), "arcsin": unary(unit(3, 4)), "arccos": unary(unit(3, 4)),
    "arctan": unary(), "arcsinh": unary(), "arctanh": unary(unit(3, 4)),
    "log": unary(positive(3, 4)), "log1p": unary(positive(3, 4)), "log2": unary(positive(3, 4)),
    "log10": unary(positive(3, 4)), "sqrt": unary(positive(3, 4)), "cbrt": unary(positive(3, 4)),
    "square": unary(), "reciprocal": unary(positive(3, 4)), "abs": unary(positive(3, 4)) + [
        Case(lambda rng: (-rng.uniform(0.5, 2.0, (5,)),), id="negative")],
    "real": unary(), "conj": unary(),
    "add": binary(), "subtract": binary(), "multiply": binary(),
    "divide": binary(normal, positive), "logaddexp": binary(), "arctan2": binary(normal, positive),
    "power": binary(positive, normal) + [Case(lambda rng: (rng.standard_normal(5), 3), argnums=(0,),
                                               id="integer-exponent")],
    "maximum": binary(), "minimum": binary(),
    "fmax": binary() + [Case(args(normal(3, 4), nan_holes(3, 4)), id="nan")],
    "fmin": binary() + [Case(args(nan_holes(3, 4), normal(3, 4)), id="nan")],
    "where": [Case(lambda rng: (rng.standard_normal((3, 4)) > 0, rng.standard_normal((3, 4)),
                                rng.standard_normal((1, 4))), argnums=(1, 2))],
    "clip": [Case(lambda rng: (rng.uniform(-2, 2, (20,)) + 0.05, -1.0, 1.0), argnums=(0,))],
    "sum": [Case(args(normal(3, 4))), Case(args(normal(3, 4), 1), id="axis"),
            Case(args(normal(2, 3, 4), (0, 2)), kwargs={"keepdims": True}, id="keepdims")],
    "mean": [Case(args(normal(3, 4))), Case(args(normal(3, 4), -1), id="axis"),
             Case(args(normal(2, 3, 4), 1), kwargs={"keepdims": True}, id="keepdims")],
    "prod": [Case(args(positive(3, 4))), Case(args(positive(3, 4), 0), id="axis")],
    "max": [Case(args(_distinct(3, 4))), Case(args(_distinct(3, 4), 1), id="axis"),
            Case(args(_distinct(2, 3, 4), (0, 2)), kwargs={"keepdims": True}, id="keepdims")],
    "min": [Case(args(_distinct(3, 4))), Case(args(_distinct(3, 4), 0), id="axis")],
    "cumsum": [Case(args(normal(3, 4))), Case(args(normal(3, 4), 1), id="axis")],
    "reshape": [Case(args(normal(3, 4), (2, 6))), Case(args(normal(3, 4), (-1,)), kwargs={"order": "F"})],
    "squeeze": [Case(args(normal(3, 1, 4))), Case(args(normal(3, 1, 4), 1), id="axis")],
    "expand_dims": [Case(args(normal(3, 4), 1))],
    "broadcast_to": [Case(args(normal(3, 1), (2, 3, 4)))],
    "transpose": [Case(args(normal(2, 3, 4))), Case(args(normal(2, 3, 4), (1, 2, 0)), id="axes")],
    "swapaxes": [Case(args(normal(2, 3, 4), 0, 2))],
    "moveaxis": [Case(args(normal(2, 3, 4), 0, -1))],
    "flip": [Case(args(normal(3, 4))), Case(args(normal(3, 4), 1), id="axis")],
    "roll": [Case(args(normal(3, 4), 2)), Case(args(normal(3, 4), (1, -2), (0, 1)), id="axes")],
    "getitem": [Case(args(normal(5, 4), (slice(1, 4), 2)), argnums=(0,), id="basic"),
                Case(args(normal(5, 4), onp.array([0, 2, 2, 4])), argnums=(0,), id="repeated-index"),
                Case(lambda rng: (rng.standard_normal((5, 4)), rng.standard_normal((5, 4)) > 0),
                     argnums=(0,), id="mask"),
                Case(args(normal(5, 4), (Ellipsis, None, 1)), argnums=(0,), id="newaxis")],
    "untake": [Case(args(normal(4, 4), onp.array([0, 2, 2, 4]), (5, 4)), argnums=(0,))],
    "take_flat": [Case(args(normal(3, 4), onp.array([[0, 5], [5, 11]])), argnums=(0,))],
    "put_add_flat": [Case(args(normal(2, 2), onp.array([[0, 5], [5, -1]]), (3, 4)), argnums=(0,))],
    "stack": [Case(lambda rng: ([rng.standard_normal((3, 4)) for _ in range(3)],)),
              Case(lambda rng: ((rng.standard_normal(3), rng.standard_normal(3)), -1), id="axis")],
    "concatenate": [Case(lambda rng: ([rng.standard_normal((2, 4)), rng.standard_normal((3, 4))],)),
                    Case(lambda rng: ([rng.standard_normal((3, 2)), rng.standard_normal((3, 1))], 1),
                         id="axis"),
                    Case(lambda rng: ([rng.standard_normal((3, 2)), rng.standard_normal(4)], None),
                         id="flat")],
    "pad": [Case(args(normal(3, 4), ((1, 2), (0, 3))), kwargs={"constant_values": 2.0}, id="constant"),
            Case(args(normal(3, 4), 2, "wrap"), id="wrap"),
            Case(args(normal(3, 4), ((1, 2), (2, 1)), "edge"), id="edge"),
            Case(args(normal(4, 5), 2, "reflect"), id="reflect")],
    "einsum": [Case(lambda rng: ("ij,jk->ik", rng.standard_normal((3, 4)), rng.standard_normal((4, 5)))),
               Case(lambda rng: ("ij->", rng.standard_normal((3, 4))), id="full-sum"),
               Case(lambda rng: ("i,j", rng.standard_normal(3), rng.standard_normal(4)), id="implicit"),
               Case(lambda rng: ("...ij,...jk->...ik", rng.standard_normal((2, 3, 4)),
                                 rng.standard_normal((4, 2))), id="ellipsis"),
               Case(lambda rng: ("ij,j->j", rng.standard_normal((3, 4)), rng.standard_normal(4)),
                    id="summed-alone")],
    "matmul": [Case(args(normal(3, 4), normal(4, 5))), Case(args(normal(2, 3, 4), normal(4, 5)), id="batch"),
               Case(args(normal(4), normal(2, 4, 5)), id="vector-left"),
               Case(args(normal(2, 3, 4), normal(4)), id="vector-right"),
               Case(args(normal(4), normal(4)), id="vectors")],
}
