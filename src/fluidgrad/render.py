"""Rendering of simulation fields to images, videos (mp4 / gif) and PNG plots.

Fields are arrays indexed ``[x, y]`` (2-D) or ``[x, y, z]`` (3-D) with y pointing
up. Every image made here shows x to the right and y upward: image row 0 is the
top of the domain (highest y), image column 0 its left side (x = 0).

Video frames and ``fluidgrad render`` PNGs carry their meaning (:class:`FrameRenderer`):
axes in box coordinates, a colorbar labelled with the field's name and units, a title
(the 3-D slice or projection named), the time ``t = …`` and step of each frame, the
obstacles in gray, velocity arrows spaced and sized in pixels. Units are those of the
scenario: lengths ``L`` as in ``grid.size``, times ``T`` as in ``time.dt``. The decorations
are drawn once per video with matplotlib; each frame only blits the field (upscaled by
whole nearest-neighbour blocks), the time stamp (pre-rendered glyphs) and the arrows.

Only matplotlib's Agg canvas is used (``Figure`` + ``FigureCanvasAgg``, never
pyplot), so nothing here needs a display. Videos go through imageio: mp4 with
the ffmpeg binary bundled by ``imageio-ffmpeg``, gif with pillow. Every writer
is atomic: it writes a hidden temporary file in the destination folder and then
``os.replace``-s it onto the destination, so a reader never sees half a file.
"""

from __future__ import annotations

import collections.abc
import functools
import math
import tempfile
import threading
import time
from pathlib import Path

import numpy as onp

from .atomic import atomic_write
from .errors import InputError

FIELDS = ("density", "vorticity", "speed", "pressure")
DEFAULT_COLORMAPS = {"density": "inferno", "vorticity": "RdBu_r", "speed": "viridis", "pressure": "coolwarm"}
#: per field: (name, units); L and T are the scenario's units of length and time
FIELD_NAMES = {"density": ("density", "dimensionless"), "speed": ("speed |u|", "L/T"),
               "vorticity": ("vorticity ω = ∂v/∂x − ∂u/∂y", "1/T"), "pressure": ("pressure p·Δt/ρ", "L²/T")}
SIGNED_FIELDS = ("vorticity", "pressure")  # symmetric colour limits about 0, a diverging colormap
MAGNITUDE_COLORMAP = "magma"               # 3-D vorticity is drawn as its magnitude |ω|

OBSTACLE_RGB = (128, 128, 128)
MIN_LONG_SIDE = 256                 # to_image's default upscaling makes the longer side at least this many pixels
PLOT_MIN_LONG_SIDE = 480            # ... and a decorated frame's plot at least this many,
PLOT_MIN_SHORT_SIDE = 192           # its shorter side this many
PLOT_MAX_LONG_SIDE = 1280           # (unless that makes the longer one longer than this)
ARROW_SPACING = 36                  # pixels between arrows (rounded to whole cells)
VIDEO_SUFFIXES = (".mp4", ".gif")
_SAMPLES_PER_FRAME = 1 << 20        # percentile estimates use at most this many values per frame
_SAMPLES = 1 << 20                  # ... and at most this many over all frames
_DPI = 100


# ----------------------------------------------------------------------------- helpers

def _as_numpy(x):
    """A numpy view of ``x`` (cupy arrays are copied to the host, Tensors unwrapped)."""
    try:
        from .backend import to_numpy
        return to_numpy(x)
    except ImportError:  # pragma: no cover - the backend module is part of the package
        return onp.asarray(x)


def _check_field(field):
    if field not in FIELDS:
        raise InputError(f"unknown field {field!r}; expected one of {', '.join(FIELDS)}")


def field_info(field, ndim=2):
    """What ``field`` is, for labels and colours: ``{"name", "units", "label", "signed",
    "colormap"}``; ``label`` reads e.g. ``"density [dimensionless]"``. ``ndim=3``:
    vorticity is its magnitude ``|ω|`` (unsigned, as the video's 3-D frames hold it)."""
    _check_field(field)
    name, units = FIELD_NAMES[field]
    signed, colormap = field in SIGNED_FIELDS, DEFAULT_COLORMAPS[field]
    if field == "vorticity" and ndim == 3:
        name, signed, colormap = "vorticity magnitude |ω|", False, MAGNITUDE_COLORMAP
    return {"name": name, "units": units, "label": f"{name} [{units}]", "signed": signed, "colormap": colormap}


def _colormap(name):
    """The matplotlib colormap called ``name`` (ValueError if there is none)."""
    import matplotlib
    try:
        return matplotlib.colormaps[name]
    except KeyError:
        import difflib
        hint = difflib.get_close_matches(str(name), list(matplotlib.colormaps), n=1)
        raise InputError(f"unknown colormap {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")) from None


def _pad_even(image):
    """``image`` with its last row / column repeated where needed to make height and width even."""
    h, w = image.shape[:2]
    ph, pw = h % 2, w % 2
    if not (ph or pw):
        return image
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (image.ndim - 2)
    return onp.pad(image, pad, mode="edge")


def _save_figure(fig, path):
    """Save the matplotlib Figure ``fig`` as a PNG at ``path``, atomically."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"expected a .png path, got suffix {path.suffix!r} ({path})")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


_warm_up = []  # the background thread of warm_up(), once started


def warm_up():
    """Start, in a background thread, what the first decorated picture of a process needs
    (matplotlib's figure machinery, the fonts, the time stamp's glyphs: ~0.3 s), so that it
    overlaps a simulation that runs meanwhile; the first figure waits for it to finish."""
    if not _warm_up:
        def make():
            try:
                _glyphs()
            except Exception:  # noqa: BLE001 - the first figure redoes it and reports what fails
                pass
        _warm_up.append(threading.Thread(target=make, name="fluidgrad-render-warm-up", daemon=True))
        _warm_up[0].start()


def _await_warm_up():
    """Wait for :func:`warm_up`'s thread, if one runs (matplotlib is drawn in one thread)."""
    if _warm_up and _warm_up[0] is not threading.current_thread():
        _warm_up[0].join()


def _new_figure(figsize, dpi=100):
    """A matplotlib Figure attached to an Agg canvas (no pyplot, no display)."""
    _await_warm_up()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _check_image(image, what="image"):
    image = onp.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != onp.uint8:
        raise InputError(f"{what}: expected a uint8 RGB array of shape (H, W, 3), "
                         f"got dtype {image.dtype} and shape {image.shape}")
    return image


# ----------------------------------------------------------------------------- frames


class FrameSpool(collections.abc.Sequence):
    """Video frames kept in an unnamed temporary file instead of in memory: ``append`` an
    array (or a tuple of arrays, e.g. a frame's velocity) while simulating, then read the
    frames back one at a time, by index or by iterating, as often as needed.

    A 512² float32 video of 51 frames held 51 MB during the whole rollout and, once freed,
    left the process's heap that much bigger for the rest of an optimization. The file
    lives in ``folder`` (default: the system's temporary folder) and is gone when the
    spool is closed or collected (on Linux it never has a name)."""

    def __init__(self, folder=None):
        self._file = tempfile.TemporaryFile(prefix=".fluidgrad-frames-", dir=folder)
        self._items = []  # per frame: (is a tuple, [(offset, shape, dtype), ...])
        self._end = 0

    def append(self, frame):
        parts = tuple(frame) if isinstance(frame, (tuple, list)) else (frame,)
        layout = []
        self._file.seek(self._end)
        for part in parts:
            a = onp.ascontiguousarray(_as_numpy(part))
            if a.size:
                self._file.write(memoryview(a.reshape(-1)).cast("B"))
            layout.append((self._end, a.shape, a.dtype))
            self._end += a.nbytes
        self._items.append((isinstance(frame, (tuple, list)), layout))

    def __len__(self):
        return len(self._items)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        is_tuple, layout = self._items[k]
        parts = []
        for offset, shape, dtype in layout:
            self._file.seek(offset)
            data = self._file.read(math.prod(shape) * dtype.itemsize)
            parts.append(onp.frombuffer(data, dtype=dtype).reshape(shape))
        return tuple(parts) if is_tuple else parts[0]

    def close(self):
        self._file.close()


# ----------------------------------------------------------------------------- images

def field_limits(frames, field, count=None, signed=None):
    """Colour limits ``(vmin, vmax)`` shared by all ``frames`` (arrays) of ``field``.

    Unsigned fields (density, speed; ``signed=False``): ``(min(0, global min), global
    max)``; signed ones (vorticity, pressure; ``signed=True``): ``(-a, a)`` with ``a``
    the 99.5th percentile of ``|values|`` over all frames (the largest ``|value|`` if
    that percentile is 0, and 1 if all are 0). ``signed`` defaults to the field's kind
    (:data:`SIGNED_FIELDS`). Non-finite values are ignored; ``vmax > vmin`` always holds.
    With ``count`` (the number of frames) ``frames`` may be any iterable, read once, one
    frame at a time.
    """
    _check_field(field)
    if count is None:
        frames = [_as_numpy(f) for f in frames]
        count = len(frames)
    if not count:
        raise InputError(f"field_limits: no frames given for {field!r}")
    symmetric = field in SIGNED_FIELDS if signed is None else bool(signed)
    # a percentile sample of at most _SAMPLES values over all frames, in the frames' dtype
    # (a 512² video of 51 frames kept 13 M float64 values, 107 MB), none for min / max limits
    per_frame = max(1, _SAMPLES // count)
    lo, hi, samples, found = math.inf, -math.inf, [], False
    for f in frames:
        values = onp.asarray(_as_numpy(f)).ravel()
        finite = onp.isfinite(values)
        if not finite.all():  # copies only a frame with NaN / Inf
            values = values[finite]
        if values.size == 0:
            continue
        found = True
        lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
        if symmetric:
            step = max(1, -(-values.size // min(per_frame, _SAMPLES_PER_FRAME)))
            samples.append(onp.abs(values[::step]))
    if not found:  # nothing finite at all
        return (-1.0, 1.0) if symmetric else (0.0, 1.0)
    if not symmetric:
        vmin, vmax = min(0.0, lo), hi
        if not vmax > vmin:
            vmax = vmin + 1.0
        return vmin, vmax
    a = float(onp.percentile(onp.concatenate(samples), 99.5))
    if not a > 0:
        a = max(abs(lo), abs(hi))
    if not a > 0:
        a = 1.0
    return -a, a


def _default_scale(nx, ny):
    """Smallest integer factor making the longer side >= MIN_LONG_SIDE, bumped to keep both sides even."""
    s = max(1, -(-MIN_LONG_SIDE // max(nx, ny)))
    if (nx * s) % 2 or (ny * s) % 2:
        s += 1  # s was odd: s + 1 is even, so both sides become even
    return s


def plot_scale(nx, ny):
    """The whole nearest-neighbour block size of a decorated frame's plot: the smallest
    integer making its longer side at least :data:`PLOT_MIN_LONG_SIDE` pixels and its
    shorter side at least :data:`PLOT_MIN_SHORT_SIDE` (a wide channel), the latter only
    while the longer side stays within :data:`PLOT_MAX_LONG_SIDE`; 1 for a large grid
    (never shrunk)."""
    long, short = max(nx, ny), min(nx, ny)
    s = max(1, -(-PLOT_MIN_LONG_SIDE // long))
    return max(s, min(-(-PLOT_MIN_SHORT_SIDE // short), PLOT_MAX_LONG_SIDE // long))


@functools.lru_cache(maxsize=32)
def _lut(colormap):
    """``(table, n)``: the uint8 RGB colours of ``colormap``'s ``n`` levels, then its "bad"
    colour (index n), then the obstacle gray (index n + 1)."""
    cmap = _colormap(colormap)
    n = cmap.N
    table = onp.empty((n + 2, 3), onp.uint8)
    table[:n] = cmap(onp.arange(n), bytes=True)[:, :3]
    table[n] = cmap(onp.nan, bytes=True)[:3]
    table[n + 1] = OBSTACLE_RGB
    return table, n


def _levels(field2d, vmin, vmax, n, obstacle=None):
    """The colour indices ``[x, y]`` (uint16) of a 2-D field: level ``⌊n (f - vmin) / (vmax -
    vmin)⌋`` clipped to ``0 … n-1``, NaN ``n`` (the "bad" colour), ``obstacle`` cells ``n + 1``.
    The arithmetic runs on the field as it is laid out (a transposed view costs twice as much)."""
    f = _as_numpy(field2d)
    f = onp.asarray(f, dtype=onp.float32 if f.dtype in (onp.float16, onp.float32) else onp.float64)
    x = f - f.dtype.type(vmin)
    x *= f.dtype.type(n / (vmax - vmin))
    onp.clip(x, 0, n - 1, out=x)
    bad = onp.isnan(x)
    with onp.errstate(invalid="ignore"):
        idx = x.astype(onp.uint16)  # levels (N <= 65533) and the two extra colours
    if bad.any():
        idx[bad] = n
    if obstacle is not None:
        idx[obstacle] = n + 1
    return idx


def _paint(dst, idx, table, s=1):
    """Write the colours ``table[idx]`` of the indices ``idx`` ``[x, y]`` into ``dst`` ``(ny·s, nx·s, 3)``
    (uint8, may be a view into a larger frame), y up, each cell an ``s × s`` block. One pixel is
    one 3-byte element (``V3``): the lookup gathers whole pixels, the upscaling copies whole rows."""
    nx, ny = idx.shape
    rgb = onp.take(table.view("V3")[:, 0], idx.T[::-1])  # (ny, nx) pixels: rows = y (top = highest)
    row = rgb.repeat(s, axis=1) if s > 1 else rgb
    dst.view("V3")[..., 0].reshape(ny, s, nx * s)[...] = row[:, None]
    return dst


def colorize(field2d, vmin, vmax, colormap, obstacle=None):
    """The uint8 RGB image ``(ny, nx, 3)`` of the 2-D field ``[x, y]``, one pixel per cell,
    y up: ``colormap``'s level ``⌊N (f - vmin) / (vmax - vmin)⌋`` (clipped; what
    matplotlib's ``Colormap(…, bytes=True)`` gives), NaN the "bad" colour, ``obstacle``
    cells gray. A lookup table: no float RGBA image is ever made."""
    table, n = _lut(colormap)
    mask = None if obstacle is None else onp.asarray(_as_numpy(obstacle)).astype(bool)
    idx = _levels(field2d, vmin, vmax, n, mask)
    return _paint(onp.empty((idx.shape[1], idx.shape[0], 3), onp.uint8), idx, table)


def to_image(field2d, vmin, vmax, colormap="inferno", obstacle=None, scale=None):
    """A 2-D cell field ``[x, y]`` as a uint8 RGB image ``(H, W, 3)`` with x right and y up.

    Values are mapped linearly from ``[vmin, vmax]`` (clipped) through ``colormap``;
    NaNs take the colormap's "bad" colour. ``obstacle`` (boolean mask, same shape)
    cells are painted mid-gray. Every cell becomes a ``scale × scale`` pixel block
    (nearest neighbour); by default ``scale`` makes the longer side at least 256 px.
    Height and width are always even (mp4/yuv420 needs that): with an explicit
    ``scale`` an odd side is padded by repeating the bottom row / right column.
    The bare field: :class:`FrameRenderer` adds the axes, colorbar and time.
    """
    f = _as_numpy(field2d)
    if f.ndim != 2:
        raise InputError(f"to_image: expected a 2-D field [x, y], got shape {f.shape}")
    if f.size == 0:
        raise InputError(f"to_image: empty field of shape {f.shape}")
    vmin, vmax = float(vmin), float(vmax)
    if not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > vmin):
        raise InputError(f"to_image: need finite limits with vmax > vmin, got ({vmin}, {vmax})")
    nx, ny = f.shape
    if scale is None:
        scale = _default_scale(nx, ny)
    elif isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise InputError(f"to_image: scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    if obstacle is not None and onp.shape(_as_numpy(obstacle)) != f.shape:
        raise InputError(f"to_image: obstacle mask shape {onp.shape(_as_numpy(obstacle))} differs from "
                         f"field shape {f.shape}")
    table, n = _lut(colormap)
    idx = _levels(f, vmin, vmax, n, None if obstacle is None else onp.asarray(_as_numpy(obstacle)).astype(bool))
    image = _paint(onp.empty((ny * scale, nx * scale, 3), onp.uint8), idx, table, scale)
    return onp.ascontiguousarray(_pad_even(image), dtype=onp.uint8)


def project_3d(field3d, mode="slice"):
    """A 3-D field ``[x, y, z]`` reduced to 2-D ``[x, y]``.

    ``mode="slice"``: the middle z-plane ``[:, :, nz // 2]``; ``mode="max"``: the
    maximum over z (maximum-intensity projection; for a boolean mask, "any").
    """
    f = _as_numpy(field3d)
    if f.ndim != 3:
        raise InputError(f"project_3d: expected a 3-D field [x, y, z], got shape {f.shape}")
    if mode == "slice":
        return f[:, :, f.shape[2] // 2]
    if mode == "max":
        return f.max(axis=2)
    raise InputError(f"project_3d: unknown mode {mode!r}; expected 'slice' or 'max'")


def vorticity_from_centered(velocity, dx=1.0, periodic=None):
    """The vorticity of a cell-centred velocity ``(u, v)`` or ``(u, v, w)`` (arrays ``[x, y(, z)]``,
    or one stacked array): ``∂v/∂x − ∂u/∂y`` in 2-D, the magnitude ``|∇ × u|`` in 3-D, as the
    videos draw it. Central differences of spacing ``dx`` (inside, the video's stencil);
    along an axis flagged in ``periodic`` they wrap, elsewhere the wall cells take one-sided ones."""
    comps = [onp.asarray(_as_numpy(c), dtype=onp.float64) for c in velocity]
    ndim = len(comps)
    if ndim not in (2, 3) or any(c.shape != comps[0].shape or c.ndim != ndim for c in comps):
        raise InputError(f"vorticity_from_centered: expected {ndim} arrays of {ndim} dimensions and one shape, "
                         f"got shapes {[c.shape for c in comps]}")
    periodic = tuple(periodic) if periodic is not None else (False,) * ndim

    def d(c, axis):
        if periodic[axis]:
            return (onp.roll(c, -1, axis) - onp.roll(c, 1, axis)) / (2 * dx)
        if c.shape[axis] < 2:
            return onp.zeros_like(c)
        return onp.gradient(c, dx, axis=axis)

    if ndim == 2:
        u, v = comps
        return d(v, 0) - d(u, 1)
    u, v, w = comps
    curl = (d(w, 1) - d(v, 2), d(u, 2) - d(w, 0), d(v, 0) - d(u, 1))
    return onp.sqrt(sum(c ** 2 for c in curl))


# ----------------------------------------------------------------------------- arrows

class _Arrows:
    """Velocity arrows over a plot of ``nx × ny`` cells drawn ``scale`` pixels each, at one
    fixed length scale for a whole video: one arrow every ``stride`` cells (about
    :data:`ARROW_SPACING` pixels apart at any resolution), the speed ``vmax`` spanning 0.9
    of that spacing and shorter ones in proportion to the square root of their speed (so the
    slow flow still shows where it goes), shafts 2 px wide (white, black edge); arrows
    shorter than 6 px are left out (no dot noise). One transparent matplotlib figure,
    reused frame after frame."""

    def __init__(self, nx, ny, scale, vmax, stride=None):
        if stride is None:
            stride = max(1, round(ARROW_SPACING / scale))
        self.nx, self.ny, self.scale, self.stride = nx, ny, scale, int(stride)
        self.vmax = float(vmax) if vmax and math.isfinite(vmax) and vmax > 0 else 0.0
        i0 = self.stride // 2
        self.sl = (slice(i0, None, self.stride), slice(i0, None, self.stride))
        xs, ys = onp.arange(i0, nx, self.stride) + 0.5, onp.arange(i0, ny, self.stride) + 0.5
        self.X, self.Y = onp.meshgrid(xs, ys, indexing="ij")
        self.w, self.h = nx * scale, ny * scale
        self._fig = self._quiver = None

    @staticmethod
    def sample_max(uv, stride):
        """The largest speed among the arrows of ``uv`` (for :attr:`vmax`); 0 if none is finite."""
        i0 = stride // 2
        u = onp.asarray(_as_numpy(uv[0]))[i0::stride, i0::stride]
        v = onp.asarray(_as_numpy(uv[1]))[i0::stride, i0::stride]
        s = onp.hypot(u.astype(onp.float64), v.astype(onp.float64))
        s = s[onp.isfinite(s)]
        return float(s.max()) if s.size else 0.0

    def _setup(self):
        fig = _new_figure((self.w / _DPI, self.h / _DPI), dpi=_DPI)
        fig.patch.set_alpha(0.0)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        ax.set_xlim(0, self.nx)
        ax.set_ylim(0, self.ny)
        zeros = onp.zeros(self.X.shape)
        self._quiver = ax.quiver(self.X, self.Y, zeros, zeros, angles="xy", scale_units="xy",
                                 scale=self.vmax / (0.9 * self.stride), units="dots", width=2.0,
                                 headwidth=3.5, headlength=4.0, headaxislength=3.5, minlength=0.0,
                                 color="white", edgecolor="black", linewidth=0.6, pivot="mid")
        self._fig = fig

    def draw(self, view, uv):
        """Draw the arrows of ``uv`` (cell-centred ``(u, v)`` ``[x, y]``) onto ``view``, the
        plot's uint8 RGB pixels ``(ny·scale, nx·scale, 3)``, in place."""
        if not self.vmax > 0:
            return view
        u = onp.asarray(_as_numpy(uv[0]), dtype=onp.float64)[self.sl]
        v = onp.asarray(_as_numpy(uv[1]), dtype=onp.float64)[self.sl]
        speed = onp.hypot(u, v)
        with onp.errstate(invalid="ignore", divide="ignore"):
            shown = onp.sqrt(speed * self.vmax)  # lengths ∝ √speed: the slow flow still shows its direction
            u, v = u * (shown / speed), v * (shown / speed)
        pixels = shown / self.vmax * 0.9 * self.stride * self.scale
        hide = ~(pixels >= 6.0)  # too short to read as an arrow (and NaN)
        if hide.all():
            return view
        if self._fig is None:
            self._setup()
        self._quiver.set_UVC(onp.ma.masked_array(onp.nan_to_num(u), hide),
                             onp.ma.masked_array(onp.nan_to_num(v), hide))
        self._fig.canvas.draw()
        rgba = onp.asarray(self._fig.canvas.buffer_rgba())[: self.h, : self.w]
        if rgba.shape[:2] != (self.h, self.w):  # float rounding of the figure size cost a pixel
            rgba = onp.pad(rgba, [(0, self.h - rgba.shape[0]), (0, self.w - rgba.shape[1]), (0, 0)])
        rows, cols = onp.nonzero(rgba[..., 3])
        if rows.size:
            a = rgba[rows, cols, 3:4].astype(onp.float32) / 255.0
            under = view[rows, cols].astype(onp.float32)
            view[rows, cols] = (under + a * (rgba[rows, cols, :3] - under) + 0.5).astype(onp.uint8)
        return view


def add_arrows(image, velocity_centered, stride=None, vmax=None):
    """``image`` (from :func:`to_image`) with velocity arrows drawn on it, same size.

    ``velocity_centered`` is ``(u, v)``: 2-D arrays ``[x, y]`` at cell centres of the
    imaged grid. One arrow every ``stride`` cells (default: about 36 pixels apart); the
    speed ``vmax`` (default: the largest arrow's) spans 0.9 of that spacing, lengths grow as
    the square root of the speed; arrows shorter than 6 px are left out. A zero field adds
    nothing.
    """
    image = _check_image(image, "add_arrows")
    if len(velocity_centered) < 2:
        raise InputError("add_arrows: velocity_centered must hold the components (u, v)")
    u, v = (onp.asarray(_as_numpy(c), dtype=onp.float64) for c in velocity_centered[:2])
    if u.ndim != 2 or u.shape != v.shape:
        raise InputError(f"add_arrows: u and v must be 2-D arrays of one shape, got {u.shape} and {v.shape}")
    nx, ny = u.shape
    h, w = image.shape[:2]
    s = min(w // nx, h // ny)
    if s < 1:
        raise InputError(f"add_arrows: image {w}x{h} px is smaller than the {nx}x{ny} velocity grid")
    if stride is not None and (isinstance(stride, bool) or int(stride) != stride or stride < 1):
        raise InputError(f"add_arrows: stride must be a positive integer, got {stride!r}")
    arrows = _Arrows(nx, ny, s, 0.0, stride)
    arrows.vmax = _Arrows.sample_max((u, v), arrows.stride) if vmax is None else float(vmax)
    out = image.copy()
    arrows.draw(out[: ny * s, : nx * s], (u, v))  # any even-padding is at the right / bottom
    return out

# ----------------------------------------------------------------------------- decorated frames

_GLYPH_CHARS = "0123456789.,-+e tsframpo=/()|"


@functools.lru_cache(maxsize=4)
def _glyphs(fontsize=11.0):
    """``(glyphs, width, height)``: each character of :data:`_GLYPH_CHARS` as a uint8 RGB cell
    ``(height, width, 3)``, black monospace (DejaVu Sans Mono) on white, all on one baseline:
    a time stamp is a row of these cells, made in microseconds (no text drawing per frame)."""
    from matplotlib.font_manager import FontProperties
    prop = FontProperties(family="monospace", size=fontsize)
    fig = _new_figure((1, 1), dpi=_DPI)
    renderer = fig.canvas.get_renderer()
    w10 = renderer.get_text_width_height_descent("0" * 10, prop, ismath=False)[0]
    _, height, descent = renderer.get_text_width_height_descent(_GLYPH_CHARS, prop, ismath=False)
    width, height = int(math.ceil(w10 / 10)), int(math.ceil(height)) + 2
    pitch = 2 * width  # every glyph in its own cell of one figure, one draw, all at whole-pixel offsets
    fig.set_size_inches(pitch * len(_GLYPH_CHARS) / _DPI, height / _DPI)
    total = pitch * len(_GLYPH_CHARS)
    for i, c in enumerate(_GLYPH_CHARS):
        fig.text(i * pitch / total, (descent + 1) / height, c, fontproperties=prop, color="black", va="baseline")
    fig.canvas.draw()
    strip = onp.asarray(fig.canvas.buffer_rgba())[..., :3]
    glyphs = {}
    for i, c in enumerate(_GLYPH_CHARS):
        cell = strip[:height, i * pitch:i * pitch + width]
        full = onp.full((height, width, 3), 255, onp.uint8)
        full[: cell.shape[0], : cell.shape[1]] = cell
        glyphs[c] = full
    return glyphs, width, height


def stamp_text(k, count, times=None, steps=None, decimals=None):
    """The time stamp of frame ``k`` of ``count``: ``t = 1.250  step 125`` (as much of it
    as ``times`` / ``steps`` give), ``frame 3/40`` without either."""
    parts = []
    if times is not None:
        d = _decimals(times) if decimals is None else decimals
        parts.append(f"t = {float(times[k]):.{d}f}")
    if steps is not None:
        parts.append(f"step {int(steps[k])}")
    return "   ".join(parts) if parts else f"frame {k + 1}/{count}"


def _decimals(times, most=4):
    """The fewest decimals (at most ``most``) that write every time of ``times`` exactly
    (to 1e-9 relative): 0.08 → 2, 0.015 → 3, 2.0 → 1 (a time always shows one)."""
    values = [float(t) for t in times if math.isfinite(float(t))]
    for d in range(1, most + 1):
        if all(abs(round(t, d) - t) <= 1e-9 * max(1.0, abs(t)) for t in values):
            return d
    return most


class FrameRenderer:
    """Decorated frames of one field on one grid: the decorations (axes in box coordinates,
    the colorbar with the field's name and units, the title, a caption) are drawn ONCE with
    matplotlib into :attr:`background`; :meth:`frame` then blits a field into the plot box
    (``scale × scale`` nearest-neighbour blocks: exactly the cells, no blur) and its time stamp
    into the stamp box, and draws the arrows, if any.

    * ``shape``: ``(nx, ny)``, the 2-D field drawn; ``size``: the box's lengths ``(Lx, Ly)``
      (or ``(Lx, Ly, Lz)``) in L; None labels the axes in cells;
    * ``vmin``, ``vmax``: the colour limits (fixed for all frames); ``colormap``: default the
      field's (:func:`field_info`); ``ndim=3`` with ``mode`` (``slice`` / ``max``) and
      ``depth`` (nz) names the z-slice or the projection in the title;
    * ``obstacle``: a 2-D mask painted gray in every frame; ``stamp_chars``: the longest
      time stamp to make room for; ``arrow_max``: the speed of the longest arrow (arrows only
      with it); ``title``: more words for the title (e.g. "before optimization").

    Boxes are ``(top, left, height, width)`` in pixels of the frame: :attr:`plot_box`,
    :attr:`stamp_box`, :attr:`colorbar_box`; :attr:`labels` holds the texts drawn."""

    def __init__(self, shape, field, vmin, vmax, *, colormap=None, size=None, obstacle=None, ndim=2,
                 mode="slice", depth=None, stamp_chars=24, arrow_max=None, title=None, scale=None):
        info = field_info(field, ndim)
        nx, ny = (int(n) for n in shape)
        vmin, vmax = float(vmin), float(vmax)
        if not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > vmin):
            raise InputError(f"FrameRenderer: need finite limits with vmax > vmin, got ({vmin}, {vmax})")
        self.field, self.shape, self.vmin, self.vmax = field, (nx, ny), vmin, vmax
        self.colormap = colormap or info["colormap"]
        _colormap(self.colormap)
        self.scale = int(scale) if scale else plot_scale(nx, ny)
        self.obstacle = None
        if obstacle is not None:
            mask = onp.asarray(_as_numpy(obstacle)).astype(bool)
            if mask.shape != (nx, ny):
                raise InputError(f"FrameRenderer: obstacle mask shape {mask.shape} differs from field shape {(nx, ny)}")
            self.obstacle = mask if mask.any() else None
        if size is not None:
            size = tuple(float(s) for s in size)
            if len(size) not in (2, 3) or not all(s > 0 and math.isfinite(s) for s in size):
                raise InputError(f"FrameRenderer: size must be 2 or 3 positive lengths, got {size}")
        self.size = size
        self.arrows = _Arrows(nx, ny, self.scale, arrow_max) if arrow_max is not None else None

        title_parts = [info["name"]]
        if ndim == 3:
            if mode == "max":
                title_parts.append("maximum over z")
            else:
                nz = depth or 1
                where = f"z = {(nz // 2 + 0.5) * size[2] / nz:.3g} L" if size and len(size) == 3 else f"z cell {nz // 2}"
                title_parts.append(f"slice {where} (middle of z)")
        if title:
            title_parts.append(str(title))
        caption = []
        if self.obstacle is not None:
            caption.append("gray: obstacle")
        if self.arrows is not None and self.arrows.vmax > 0:
            plane = " (in the middle z-plane)" if ndim == 3 else ""
            caption.append(f"arrows: velocity (u, v){plane}, length ∝ √speed, longest {self.arrows.vmax:.3g} L/T")
        caption.append("L, T: the scenario's units of length and time" if size else "axes in cells")
        unit = "L" if size else "cells"
        self.labels = {"title": " · ".join(title_parts), "colorbar": info["label"],
                       "x": f"x [{unit}]", "y": f"y [{unit}]", "caption": "\n".join(caption)}
        _await_warm_up()  # its glyphs, if it made them
        self._glyphs, self._gw, self._gh = _glyphs()
        self._draw(max(int(stamp_chars), 1))

    def _draw(self, stamp_chars):
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        nx, ny = self.shape
        w, h = nx * self.scale, ny * self.scale
        horizontal = w >= 2.2 * h  # a wide box: the colorbar below it
        margin = 200
        W = w + 2 * margin + (0 if horizontal else 140)
        H = h + 2 * margin + (100 if horizontal else 0)
        top, left = margin, margin
        fig = _new_figure((W / _DPI, H / _DPI), dpi=_DPI)
        fig.patch.set_facecolor("white")
        # room for the title and the caption where they are wider than the plot and its colorbar
        from matplotlib.font_manager import FontProperties
        measure = fig.canvas.get_renderer().get_text_width_height_descent
        widest = max(measure(line, FontProperties(size=size), ismath=False)[0]
                     for text, size in ((self.labels["title"], 11), (self.labels["caption"], 8))
                     for line in text.split("\n"))
        if left + widest + margin // 2 > W:
            W = int(math.ceil(left + widest)) + margin // 2
            fig.set_size_inches(W / _DPI, H / _DPI)

        def place(t, l, hh, ww):  # an axes at pixel box (top, left, height, width)
            return fig.add_axes((l / W, (H - t - hh) / H, ww / W, hh / H))

        ax = place(top, left, h, w)
        lx, ly = (self.size[0], self.size[1]) if self.size else (nx, ny)
        ax.set_xlim(0, lx)
        ax.set_ylim(0, ly)
        ax.set_xlabel(self.labels["x"])
        ax.set_ylabel(self.labels["y"])
        ax.tick_params(direction="out", length=4, labelsize=9)
        for spine in ax.spines.values():
            spine.set_visible(False)  # a crisp 2-px frame is painted below instead
        ax.patch.set_visible(False)
        sh, sw = self._gh, stamp_chars * self._gw
        stamp = (top - 6 - sh, left, sh, sw)
        fig.text(left / W, (H - stamp[0] + 6) / H, self.labels["title"], ha="left", va="bottom", fontsize=11)
        if horizontal:
            bar = (top + h + 46, left, 12, w)
        else:
            bar = (top, left + w + 16, h, 16)
        cax = place(*bar)
        cb = fig.colorbar(ScalarMappable(Normalize(self.vmin, self.vmax), _colormap(self.colormap)), cax=cax,
                          orientation="horizontal" if horizontal else "vertical")
        cb.set_label(self.labels["colorbar"], fontsize=10)
        cb.ax.tick_params(labelsize=9)
        below = bar[0] + bar[2] + 44 if horizontal else top + h + 44
        fig.text(left / W, (H - below) / H, self.labels["caption"], ha="left", va="top", fontsize=8, color="0.3")
        fig.canvas.draw()
        rgba = onp.asarray(fig.canvas.buffer_rgba())
        if rgba.shape[:2] != (H, W):  # pragma: no cover - integer pixel sizes at dpi 100 are exact
            raise RuntimeError(f"FrameRenderer: the canvas is {rgba.shape[:2]}, expected {(H, W)}")
        canvas = rgba[..., :3]
        # the crop: whatever was drawn (not opaque white: one uint32 per pixel), the plot and the
        # stamp box, plus a margin
        inked = onp.ascontiguousarray(rgba).view(onp.uint32)[..., 0] != 0xFFFFFFFF
        rows, cols = onp.flatnonzero(inked.any(axis=1)), onp.flatnonzero(inked.any(axis=0))
        pad = 8
        r0 = max(0, min(int(rows[0]), stamp[0], top - 2) - pad)
        c0 = max(0, min(int(cols[0]), left - 2) - pad)
        r0, c0 = r0 - (top - r0) % 2, c0 - (left - c0) % 2  # the plot at even rows / columns: mp4's 2x2
        r1 = min(H, max(int(rows[-1]) + 1, top + h + 2) + pad)  # chroma blocks do not mix it with the frame
        c1 = min(W, max(int(cols[-1]) + 1, left + w + 2, stamp[1] + sw) + pad)
        r1 += (r1 - r0) % 2  # even sides (mp4 / yuv420); the canvas has room
        c1 += (c1 - c0) % 2
        background = onp.array(canvas[r0:r1, c0:c1])
        t, l = top - r0, left - c0
        frame_rgb = (40, 40, 40)  # a crisp 2-px frame around the plot
        background[t - 2:t, l - 2:l + w + 2] = frame_rgb
        background[t + h:t + h + 2, l - 2:l + w + 2] = frame_rgb
        background[t - 2:t + h + 2, l - 2:l] = frame_rgb
        background[t - 2:t + h + 2, l + w:l + w + 2] = frame_rgb
        self.background = background
        self.plot_box = (t, l, h, w)
        self.stamp_box = (stamp[0] - r0, stamp[1] - c0, sh, sw)
        self.colorbar_box = (bar[0] - r0, bar[1] - c0, bar[2], bar[3])
        self.horizontal_colorbar = horizontal
        self.figure = fig  # kept for inspection (its texts are :attr:`labels`)

    def image(self, field2d):
        """The plot's pixels alone: ``field2d`` ``[x, y]`` upscaled, obstacles gray."""
        t, l, h, w = self.plot_box
        return self._plot(onp.empty((h, w, 3), onp.uint8), field2d)

    def _plot(self, view, field2d):
        table, n = _lut(self.colormap)
        return _paint(view, _levels(field2d, self.vmin, self.vmax, n, self.obstacle), table, self.scale)

    def frame(self, field2d, stamp="", velocity=None):
        """One decorated frame (uint8 RGB, :attr:`background`'s shape): ``field2d`` ``[x, y]``
        (of :attr:`shape`), the ``stamp`` text, arrows of ``velocity`` ``(u, v)`` if given."""
        f = _as_numpy(field2d)
        if f.shape != self.shape:
            raise InputError(f"FrameRenderer: field of shape {f.shape}, expected {self.shape}")
        out = self.background.copy()
        t, l, h, w = self.plot_box
        view = self._plot(out[t:t + h, l:l + w], f)
        if velocity is not None and self.arrows is not None:
            self.arrows.draw(view, velocity)
        self._stamp(out, stamp)
        return out

    def _stamp(self, out, text):
        t, l, h, w = self.stamp_box
        n = w // self._gw
        text = str(text)[:n]
        blank = self._glyphs[" "]
        row = out[t:t + h, l:l + w].reshape(h, n, self._gw, 3)
        for i in range(n):
            row[:, i] = self._glyphs.get(text[i], blank) if i < len(text) else blank

# ----------------------------------------------------------------------------- files

def write_png(path, image):
    """Write the uint8 RGB ``image`` ``(H, W, 3)`` as a PNG at ``path`` (atomically); returns the Path."""
    import imageio.v3 as iio
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"write_png: expected a .png path, got suffix {path.suffix!r} ({path})")
    image = _check_image(image, "write_png")
    return atomic_write(path, lambda tmp: iio.imwrite(tmp, image, extension=".png"))


def write_video(path, images, fps=30):
    """Write the uint8 RGB ``images`` (an iterable of ``(H, W, 3)`` arrays) as a video; returns the Path.

    The suffix picks the format: ``.mp4`` (H.264 through imageio's ffmpeg plugin;
    odd sizes are padded to even) or ``.gif`` (pillow, looping forever; note that
    GIF merges identical consecutive frames). Written atomically via a hidden
    temporary file in the same folder.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise InputError(f"write_video: unsupported suffix {path.suffix!r} ({path}); use .mp4 or .gif")
    fps = float(fps)
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"write_video: fps must be positive, got {fps}")

    def frames():
        shape = None
        for k, im in enumerate(images):
            im = _check_image(im, f"write_video frame {k}")
            if shape is None:
                shape = im.shape
            elif im.shape != shape:
                raise InputError(f"write_video: frame {k} has shape {im.shape}, frame 0 has {shape}")
            yield im
        if shape is None:
            raise InputError(f"write_video: no frames to write to {path}")

    if suffix == ".mp4":
        def write(tmp):
            import imageio.v2 as iio2
            # preset ultrafast with CABAC: encoding was three quarters of a decorated video's
            # rendering time with veryfast and is half as much now (files 1.5-2x larger, crf 15 all the same)
            writer = iio2.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=7,
                                     macro_block_size=1, pixelformat="yuv420p",
                                     output_params=["-preset", "ultrafast", "-x264-params", "cabac=1"])
            try:
                for im in frames():
                    writer.append_data(_pad_even(im))
            finally:
                writer.close()
    else:
        def write(tmp):
            import imageio.v3 as iio
            stack = onp.stack(list(frames()))
            iio.imwrite(tmp, stack, plugin="pillow", extension=".gif", is_batch=True,
                        duration=int(round(1000.0 / fps)), loop=0)
    return atomic_write(path, write)


def read_video_frame_count(path) -> int:
    """The number of frames in the mp4 or gif at ``path`` (gif: imageio/pillow; mp4: imageio-ffmpeg)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise InputError(f"read_video_frame_count: unsupported suffix {path.suffix!r} ({path}); use .mp4 or .gif")
    if not path.is_file():
        raise InputError(f"read_video_frame_count: no such file {path}")
    if suffix == ".gif":
        import imageio.v3 as iio
        return sum(1 for _ in iio.imiter(path, plugin="pillow"))
    import imageio_ffmpeg  # imageio's ffmpeg backend; decodes the whole stream, so the count is exact
    return int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])




def _flatten(a, mode, what):
    a = _as_numpy(a)
    if a.ndim == 3:
        return project_3d(a, mode)
    if a.ndim != 2:
        raise InputError(f"{what}: frames must be 2-D or 3-D arrays, got shape {a.shape}")
    return a


class DecoratedFrames:
    """The decorated video frames of :func:`render_frames`, made one at a time as they are
    iterated (a :class:`FrameSpool` stays on disk); :attr:`renderer` is their
    :class:`FrameRenderer`. Same keywords as :func:`render_frames`."""

    def __init__(self, frames, field, *, colormap=None, obstacle=None, mode="slice", velocities=None,
                 times=None, steps=None, size=None, title=None):
        _check_field(field)
        if mode not in ("slice", "max"):
            raise InputError(f"render_frames: unknown mode {mode!r}; expected 'slice' or 'max'")
        if colormap is not None:
            _colormap(colormap)
        if not isinstance(frames, collections.abc.Sequence):
            frames = list(frames)  # read twice below: the limits, then the images
        if not len(frames):
            raise InputError("render_frames: no frames to render")
        count = len(frames)
        for name, seq in (("velocities", velocities), ("times", times), ("steps", steps)):
            if seq is not None and len(seq) != count:
                raise InputError(f"render_frames: {len(seq)} {name} for {count} frames")
        first = _as_numpy(frames[0])
        ndim = first.ndim
        self.shape = _flatten(first, mode, "render_frames").shape
        self.frames, self.mode, self.velocities = frames, mode, velocities
        self.times, self.steps, self.count = times, steps, count
        mask = None if obstacle is None else _flatten(onp.asarray(_as_numpy(obstacle)).astype(bool), mode,
                                                      "render_frames")
        info = field_info(field, ndim)
        vmin, vmax = field_limits(self._frames2d(), field, count=count, signed=info["signed"])
        arrow_max = None
        if velocities is not None:
            nx, ny = self.shape
            stride = max(1, round(ARROW_SPACING / plot_scale(nx, ny)))
            arrow_max = max(_Arrows.sample_max(self._plane(uv), stride) for uv in velocities)
        decimals = _decimals(times) if times is not None else None
        stamps = [stamp_text(k, count, times, steps, decimals) for k in range(count)]
        self._stamps = stamps
        self.renderer = FrameRenderer(self.shape, field, vmin, vmax, colormap=colormap, size=size, obstacle=mask,
                                      ndim=ndim, mode=mode, depth=first.shape[2] if ndim == 3 else None,
                                      stamp_chars=max(len(s) for s in stamps), arrow_max=arrow_max, title=title)

    @staticmethod
    def _plane(uv):
        uv = [_as_numpy(c) for c in uv[:2]]
        return [c[:, :, c.shape[2] // 2] if c.ndim == 3 else c for c in uv]

    def _frames2d(self):  # one frame at a time
        for k, f in enumerate(self.frames):
            f = _flatten(f, self.mode, "render_frames")
            if f.shape != self.shape:
                raise InputError(f"render_frames: frame {k} projects to shape {f.shape}, frame 0 to {self.shape}")
            yield f

    def __len__(self):
        return self.count

    def __iter__(self):
        for k, f in enumerate(self._frames2d()):
            uv = self._plane(self.velocities[k]) if self.velocities is not None else None
            yield self.renderer.frame(f, self._stamps[k], uv)


def render_frames(frames, field, path, *, colormap=None, fps=30, obstacle=None, mode="slice", velocities=None,
                  times=None, steps=None, size=None, title=None, stats=None):
    """Render a sequence of ``field`` arrays to the video ``path`` (.mp4 / .gif); returns the Path.

    Every frame is decorated (:class:`FrameRenderer`): axes, a labelled colorbar, the
    title, and the stamp ``t = …  step …`` from ``times`` / ``steps`` (one per frame; without
    them ``frame k/n``). ``size``: the box's lengths (axes in L; default: in cells).
    2-D frames are drawn as they are, 3-D frames after :func:`project_3d` with
    ``mode`` (a 3-D ``obstacle`` mask likewise). All frames share the colour limits
    of :func:`field_limits`, computed on what is drawn. ``colormap`` defaults to the
    field's (:func:`field_info`: a diverging one for signed fields, whose limits are
    symmetric about 0). ``velocities``: optional list (one per frame) of cell-centred
    ``(u, v, ...)`` arrays drawn as arrows (3-D ones: their middle z-plane), one length
    scale for the whole video. ``frames`` and ``velocities`` may be :class:`FrameSpool` s:
    each frame is then read twice (the limits, then the images), never all at once.
    ``stats`` (a dict) receives ``frames``, ``seconds``, ``frames_per_second`` (of this whole
    call: limits, drawing, encoding) and the frame ``width`` / ``height``.
    """
    start = time.perf_counter()
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise InputError(f"render_frames: unsupported suffix {Path(path).suffix!r} ({path}); use .mp4 or .gif")
    try:
        images = DecoratedFrames(frames, field, colormap=colormap, obstacle=obstacle, mode=mode,
                                 velocities=velocities, times=times, steps=steps, size=size, title=title)
    except InputError as exc:
        if "no frames" in str(exc):
            raise InputError(f"render_frames: no frames to render to {path}") from None
        raise
    out = write_video(path, images, fps=fps)
    if stats is not None:
        seconds = time.perf_counter() - start
        h, w = images.renderer.background.shape[:2]
        stats.update({"frames": len(images), "seconds": seconds,
                      "frames_per_second": len(images) / seconds if seconds > 0 else None, "width": w, "height": h})
    return out


def render_image(values, field, *, colormap=None, obstacle=None, mode="slice", size=None, t=None, step=None,
                 title=None):
    """One decorated image (uint8 RGB) of the 2-D or 3-D field ``values``: what one video
    frame of :func:`render_frames` shows (its own colour limits), ``t`` / ``step`` stamped."""
    images = DecoratedFrames([values], field, colormap=colormap, obstacle=obstacle, mode=mode,
                             times=None if t is None else [t], steps=None if step is None else [step],
                             size=size, title=title)
    return next(iter(images))


def render_png(values, field, path, **kwargs):
    """:func:`render_image` written as a PNG at ``path`` (atomically); returns the Path."""
    return write_png(path, render_image(values, field, **kwargs))


def render_panel(target, result, path, *, colormap="inferno", obstacle=None, size=None, iteration=None, loss=None,
                 t=None, field="density", names=("target", "result")):
    """A PNG at ``path`` with three panels side by side: target | result | result − target
    (``names`` renames the first two, e.g. ``("before", "after")``).

    Target and result share one colour scale (``colormap``); the difference uses
    ``RdBu_r`` with symmetric limits; every colorbar names the field and its units.
    Arrays are 2-D ``[x, y]``; 3-D ones are max-projected over z (an obstacle mask too).
    Drawn y-up, axes in box coordinates with ``size`` (the box's lengths, else in cells);
    the title gives ``iteration``, ``loss`` and ``t`` where given. Returns the Path.
    """
    projected = []

    def flat(a, what):
        a = onp.asarray(_as_numpy(a))
        if a.ndim == 3:
            projected.append(what)
            a = project_3d(a, "max")
        if a.ndim != 2:
            raise InputError(f"render_panel: {what} must be 2-D or 3-D, got shape {a.shape}")
        return a

    t_, r = flat(target, "target"), flat(result, "result")
    if t_.shape != r.shape:
        raise InputError(f"render_panel: target shape {t_.shape} differs from result shape {r.shape}")
    mask = None if obstacle is None else flat(onp.asarray(_as_numpy(obstacle)).astype(bool), "obstacle")
    if mask is not None and mask.shape != t_.shape:
        raise InputError(f"render_panel: obstacle shape {mask.shape} differs from field shape {t_.shape}")
    info = field_info(field)
    cmap = _colormap(colormap)
    # limits over the finite values without copying them (a 512² panel's statistics in
    # float64 copies took more memory than the optimization before it)
    lo = min(_finite_min(t_), _finite_min(r))
    hi = max(-_finite_min(-t_), -_finite_min(-r))
    lo, hi = (0.0, 1.0) if not onp.isfinite(lo) else (lo, hi)
    if not hi > lo:
        hi = lo + 1.0
    diff = r.astype(onp.float64) - t_
    a = -_finite_min(-onp.abs(diff))
    a = a if onp.isfinite(a) and a > 0 else 1.0

    nx, ny = t_.shape
    lx, ly = (float(size[0]), float(size[1])) if size is not None else (float(nx), float(ny))
    unit = "L" if size is not None else "cells"
    panel_h = 3.5
    panel_w = min(max(panel_h * nx / ny, 1.5), 7.0)
    fig = _new_figure((3 * (panel_w + 1.3), panel_h + 1.2))
    axes = fig.subplots(1, 3)
    where = " (maximum over z)" if projected else ""
    first, second = names
    panels = [(t_, first + where, cmap, lo, hi, info["label"]),
              (r, second + where, cmap, lo, hi, info["label"]),
              (diff, f"{second} − {first}", _colormap("RdBu_r"), -a, a, f"{second} − {first} [{info['units']}]")]
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    k = max(1, max(nx, ny) // 384)  # every k-th cell where the grid has more cells than the panel pixels
    for ax, (data, title, cm, vmin, vmax, label) in zip(axes, panels):
        # coloured here, once, to 8-bit RGBA: matplotlib would resample the float field into
        # float64 RGBA images (tens of MiB at 512², above an optimization's peak memory)
        norm = Normalize(vmin, vmax)
        ax.imshow(cm(norm(data[::k, ::k].T), bytes=True), origin="lower", extent=(0, lx, 0, ly),
                  interpolation="nearest")
        im = ScalarMappable(norm, cm)
        if mask is not None and mask.any():
            gray = onp.ma.masked_where(~mask[::k, ::k].T, onp.ones(mask[::k, ::k].T.shape))
            ax.imshow(gray, origin="lower", cmap=_gray_cmap(), vmin=0, vmax=1,
                      extent=(0, lx, 0, ly), interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"x [{unit}]")
        ax.set_ylabel(f"y [{unit}]")
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label(label, fontsize=9)
    heading = []
    if iteration is not None:
        heading.append(f"iteration {int(iteration)}")
    if loss is not None:
        heading.append(f"loss {float(loss):.4g}")
    if t is not None:
        heading.append(f"t = {float(t):.{_decimals([t])}f} T")
    if heading:
        fig.suptitle(" · ".join(heading), fontsize=11)
    if size is not None:
        fig.text(0.01, 0.01, "L, T: the scenario's units of length and time", fontsize=7, color="0.3")
    fig.tight_layout()
    return _save_figure(fig, path)


def _finite_min(a) -> float:
    """The smallest finite value of ``a`` (inf if there is none), without a copy."""
    return float(onp.min(a, where=onp.isfinite(a), initial=onp.inf))


def _gray_cmap():
    from matplotlib.colors import ListedColormap
    return ListedColormap([[c / 255 for c in OBSTACLE_RGB]])


def plot_loss(history, path):
    """A PNG at ``path`` of loss vs iteration (log y-axis) from ``history``; returns the Path.

    ``history`` is a list of dicts with keys ``"iteration"`` and ``"loss"`` and, where
    recorded, ``"grad_norm"``: then the gradient norm is drawn against a second (log) axis
    on the right. Non-finite values are skipped; if some loss is <= 0 the y-axis is linear.
    """
    history = list(history)
    if not history:
        raise InputError("plot_loss: empty history")
    try:
        its = onp.array([float(h["iteration"]) for h in history])
        losses = onp.array([float(h["loss"]) for h in history])
    except (KeyError, TypeError) as e:
        raise InputError(f"plot_loss: every history entry needs 'iteration' and 'loss' ({e!r})") from None
    grads = onp.array([float(h["grad_norm"]) if isinstance(h, dict) and h.get("grad_norm") is not None else onp.nan
                       for h in history])
    keep = onp.isfinite(its) & onp.isfinite(losses)
    gkeep = onp.isfinite(its) & onp.isfinite(grads) & (grads > 0)
    fig = _new_figure((6.4, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    marker = "." if its.size < 50 else None
    lines = ax.plot(its[keep], losses[keep], marker=marker, linewidth=1.2, color="C0", label="loss")
    if keep.any() and (losses[keep] > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations are whole numbers
    ax.set_ylabel("loss", color="C0")
    ax.tick_params(axis="y", colors="C0")
    ax.grid(True, which="both", alpha=0.3)
    if gkeep.any():
        gx = ax.twinx()
        lines += gx.plot(its[gkeep], grads[gkeep], marker=marker, linewidth=1.0, linestyle="--", color="C3",
                         label="gradient norm |g|")
        gx.set_yscale("log")
        gx.set_ylabel("gradient norm |g|", color="C3")
        gx.tick_params(axis="y", colors="C3")
        ax.set_title("loss and gradient norm")
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper right")
    else:
        ax.set_title("loss")
    fig.tight_layout()
    return _save_figure(fig, path)


def plot_forces(runs, path, *, window=None, profiles=None, component="drag"):
    """A PNG at ``path``: ``component`` (drag or lift) against time for each run in ``runs``
    (``{label: (times, values)}``), the loss's averaging ``window`` (two times) shaded; with
    ``profiles`` (``{label: (positions, values)}``) a second panel draws the inflow profiles."""
    fig = _new_figure((10.0 if profiles else 6.4, 4.0))
    axes = fig.subplots(1, 2 if profiles else 1)
    axes = list(axes) if profiles else [axes]
    ax = axes[0]
    for i, (label, (times, values)) in enumerate(runs.items()):
        ax.plot(times, values, color=f"C{i}", linewidth=1.2, label=label)
    if window is not None:
        ax.axvspan(window[0], window[1], color="0.85", zorder=0, label="averaged in the loss")
    ax.set_xlabel("t [T]")
    ax.set_ylabel(f"{component} [L³/T² per unit density]" if component else "force")
    ax.set_title(f"{component} on the obstacles")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if profiles:
        px = axes[1]
        for i, (label, (positions, values)) in enumerate(profiles.items()):
            px.plot(values, positions, color=f"C{i}", marker=".", linewidth=1.2, label=label)
        px.set_xlabel("inflow velocity [L/T]")
        px.set_ylabel("position along the inflow face [L]")
        px.set_title("inflow profile")
        px.grid(True, alpha=0.3)
        px.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, path)


def plot_gradcheck(reports, path, horizons=None, title=None):
    """``gradcheck.png``: the U-curves (relative FD error vs step, log-log, one line per
    direction, the tolerance dashed, each best step marked, the plateau shaded) and the
    Taylor remainders vs step with slope-1 and slope-2 guides. ``reports`` is one
    :class:`~fluidgrad.testing.GradientReport` or, with ``horizons``, one per horizon: then
    the first direction of each horizon is drawn and a third panel shows the gradient norm
    and the best-step error per horizon. Returns the Path."""
    import matplotlib
    single = not isinstance(reports, (list, tuple))
    reports = [reports] if single else list(reports)
    if not reports or not reports[0].directions:
        raise InputError("plot_gradcheck: no directions to plot")
    panels = 3 if horizons else 2
    fig = _new_figure((5.0 * panels, 4.2))
    axes = [fig.add_subplot(1, panels, i + 1) for i in range(panels)]
    cmap = matplotlib.colormaps["viridis" if horizons else "tab10"]
    lines = []
    for r_index, report in enumerate(reports):
        dirs = report.directions[:1] if horizons else report.directions
        for d_index, d in enumerate(dirs):
            if horizons:
                color = cmap(r_index / max(len(reports) - 1, 1))
                label = f"{horizons[r_index]} steps"
            else:
                color = cmap(d_index % 10)
                label = f"direction {d_index + 1}"
            h = onp.asarray(d.steps, dtype=float)
            err = onp.asarray([e if e is not None else onp.nan for e in d.errors], dtype=float)
            err = onp.where(err > 0, err, onp.nan)
            lines.append((h, err, color, label, d))
    ax = axes[0]
    for h, err, color, label, d in lines:
        ax.loglog(h, err, marker=".", color=color, label=label, linewidth=1.2)
        if d.best_error and d.best_error > 0:
            ax.plot([d.best_step], [d.best_error], marker="o", mfc="none", color=color, markersize=8)
        if d.plateau and not horizons:
            ax.axvspan(d.plateau[1], d.plateau[0], color=color, alpha=0.06)
    ax.axhline(reports[0].rtol, color="k", linestyle="--", linewidth=1, label=f"tolerance {reports[0].rtol:g}")
    ax.invert_xaxis()
    ax.set_xlabel("relative step h")
    ax.set_ylabel("|FD - <g, v>| / |<g, v>|")
    ax.set_title("U-curves: central differences vs adjoint")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    remainders = [onp.asarray([r if r is not None and r > 0 else onp.nan for r in d.taylor_remainders], dtype=float)
                  for _, _, _, _, d in lines]
    for (h, _, color, label, d), rem in zip(lines, remainders, strict=True):
        ax.loglog(h, rem, marker=".", color=color, label=label, linewidth=1.2)
        if d.taylor_range:
            keep = (h <= d.taylor_range[0]) & (h >= d.taylor_range[1])
            ax.loglog(h[keep], rem[keep], color=color, linewidth=3.5, alpha=0.35)
    h, rem = lines[0][0], remainders[0]
    finite = onp.isfinite(rem)
    if finite.any():
        k = int(onp.flatnonzero(finite)[0])
        for slope, style in ((1, ":"), (2, "--")):
            ax.loglog(h, rem[k] * (h / h[k]) ** slope, color="gray", linestyle=style, linewidth=1,
                      label=f"slope {slope}")
    ax.invert_xaxis()
    ax.set_xlabel("relative step h")
    ax.set_ylabel("|f(x+hv) - f(x) - h<g, v>|")
    ax.set_title("Taylor remainder (thick: rate 2 ± tol)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    if horizons:
        ax = axes[2]
        ax.semilogy(horizons, [r.grad_norm for r in reports], marker="o", label="|g|")
        ax.semilogy(horizons, [max(r.best_error, 1e-17) for r in reports], marker="s", label="best-step error")
        ax.semilogy(horizons, [max(1 - r.cosine, 1e-17) for r in reports], marker="^", label="1 - cosine")
        ax.axhline(reports[0].rtol, color="k", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("horizon (steps)")
        ax.set_title("per horizon")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, path)
