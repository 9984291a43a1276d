"""Nested containers of arrays ("trees"): flatten to a list of leaves and rebuild.

Tuples, lists, dicts (sorted keys), namedtuples, dataclasses and ``None`` are
containers; everything else is a leaf. A MAC velocity (a tuple of face arrays) and a
simulation state (a dataclass) are trees, so primitives and transforms accept them.
Other types join with :func:`register_tree`.
"""

from __future__ import annotations

import dataclasses

from ..errors import InputError

_LEAF = None  # the treedef of a single leaf


class TreeDef:
    """How to rebuild a container from its children's leaves."""

    __slots__ = ("kind", "aux", "children", "num_leaves")

    def __init__(self, kind, aux, children):
        self.kind = kind
        self.aux = aux
        self.children = children
        self.num_leaves = sum(1 if c is _LEAF else c.num_leaves for c in children)

    def __eq__(self, other):
        return (isinstance(other, TreeDef) and self.kind is other.kind
                and self.aux == other.aux and self.children == other.children)

    def __hash__(self):
        return hash((id(self.kind), self.children))

    def __repr__(self):
        return f"TreeDef({getattr(self.kind, '__name__', self.kind)}, {self.children})"


class _Kind:
    """Flatten/unflatten functions of one container type."""

    __slots__ = ("__name__", "to_children", "from_children")

    def __init__(self, name, to_children, from_children):
        self.__name__ = name
        self.to_children = to_children      # obj -> (children list, aux)
        self.from_children = from_children  # (aux, children list) -> obj


_KINDS: dict[type, _Kind] = {}
_NOT_A_CONTAINER = object()


def register_tree(cls, to_children, from_children):
    """Make ``cls`` a container: ``to_children(obj) -> (children, aux)``,
    ``from_children(aux, children) -> obj``."""
    _KINDS[cls] = _Kind(cls.__name__, to_children, from_children)


register_tree(tuple, lambda t: (list(t), None), lambda aux, c: tuple(c))
register_tree(list, lambda t: (list(t), None), lambda aux, c: list(c))
register_tree(dict, lambda d: ([d[k] for k in sorted(d)], tuple(sorted(d))),
              lambda keys, c: dict(zip(keys, c)))
register_tree(type(None), lambda n: ([], None), lambda aux, c: None)


def _dataclass_kind(cls):
    names = tuple(f.name for f in dataclasses.fields(cls))

    def to_children(obj):
        return [getattr(obj, n) for n in names], None

    def from_children(aux, children):
        obj = object.__new__(cls)
        for n, v in zip(names, children):
            object.__setattr__(obj, n, v)
        return obj

    return _Kind(cls.__name__, to_children, from_children)


def _namedtuple_kind(cls):
    return _Kind(cls.__name__, lambda t: (list(t), None), lambda aux, c: cls(*c))


_kind_cache: dict[type, object] = {}


def kind_of(x):
    """The container kind of ``x``, or None when ``x`` is a leaf."""
    cls = type(x)
    kind = _kind_cache.get(cls)
    if kind is None:
        kind = _KINDS.get(cls)
        if kind is None:
            if dataclasses.is_dataclass(cls):
                kind = _dataclass_kind(cls)
            elif issubclass(cls, tuple) and hasattr(cls, "_fields"):
                kind = _namedtuple_kind(cls)
            else:
                kind = _NOT_A_CONTAINER
        _kind_cache[cls] = kind
    return None if kind is _NOT_A_CONTAINER else kind


def flatten(tree):
    """``(leaves, treedef)`` of ``tree``; a leaf flattens to ``([tree], None)``."""
    leaves = []
    treedef = _flatten_into(tree, leaves)
    return leaves, treedef


_LEAF_TUPLES: dict[int, TreeDef] = {}  # treedefs of tuples of leaves (MAC velocities), shared


def _flatten_into(tree, leaves):
    if type(tree) is tuple:  # the common case, fast: a tuple of leaves
        for c in tree:
            if kind_of(c) is not None:
                break
        else:
            leaves.extend(tree)
            treedef = _LEAF_TUPLES.get(len(tree))
            if treedef is None:
                treedef = _LEAF_TUPLES[len(tree)] = TreeDef(_KINDS[tuple], None, (_LEAF,) * len(tree))
            return treedef
    kind = kind_of(tree)
    if kind is None:
        leaves.append(tree)
        return _LEAF
    children, aux = kind.to_children(tree)
    return TreeDef(kind, aux, tuple([_flatten_into(c, leaves) for c in children]))


def unflatten(treedef, leaves):
    """Rebuild the tree described by ``treedef`` from ``leaves`` (any iterable)."""
    if treedef is not _LEAF and type(leaves) is list and treedef is _LEAF_TUPLES.get(len(leaves)):
        return tuple(leaves)  # the common case, fast: a tuple of leaves
    it = iter(leaves)
    return _build(treedef, it)


def _build(treedef, it):
    if treedef is _LEAF:
        return next(it)
    return treedef.kind.from_children(treedef.aux, [_build(c, it) for c in treedef.children])


def num_leaves(treedef) -> int:
    return 1 if treedef is _LEAF else treedef.num_leaves


def tree_map(fn, tree, *rest):
    """Apply ``fn`` leafwise over trees of the same structure."""
    leaves, treedef = flatten(tree)
    others = [flatten(r)[0] for r in rest]
    return unflatten(treedef, [fn(*xs) for xs in zip(leaves, *others)])


def leaves(tree):
    return flatten(tree)[0]


def flatten_as(treedef, tree):
    """The leaves of ``tree`` read along ``treedef``; a ``None`` where a subtree is
    expected stands for a subtree of ``None`` leaves (a zero cotangent or tangent)."""
    out = []
    _flatten_as_into(treedef, tree, out)
    return out


def _flatten_as_into(treedef, tree, out):
    if treedef is _LEAF:
        out.append(tree)
    elif tree is None:
        out.extend([None] * treedef.num_leaves)
    else:
        children, _ = treedef.kind.to_children(tree)
        if len(children) != len(treedef.children):
            raise InputError(f"tree structure mismatch: expected {treedef}, got {type(tree).__name__} "
                             f"with {len(children)} children")
        for c_def, c in zip(treedef.children, children):
            _flatten_as_into(c_def, c, out)
