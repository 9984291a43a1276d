"""Rendering of simulation fields to images, videos (mp4 / gif) and PNG plots.

Fields are arrays indexed ``[x, y]`` (2-D) or ``[x, y, z]`` (3-D) with y pointing
up. Every image made here shows x to the right and y upward: image row 0 is the
top of the domain (highest y), image column 0 its left side (x = 0).

Only matplotlib's Agg canvas is used (``Figure`` + ``FigureCanvasAgg``, never
pyplot), so nothing here needs a display. Videos go through imageio: mp4 with
the ffmpeg binary bundled by ``imageio-ffmpeg``, gif with pillow. Every writer
is atomic: it writes a hidden temporary file in the destination folder and then
``os.replace``-s it onto the destination, so a reader never sees half a file.
"""

from __future__ import annotations

import collections.abc
import math
import tempfile
from pathlib import Path

import numpy as onp

from .atomic import atomic_write
from .errors import InputError

FIELDS = ("density", "vorticity", "speed", "pressure")
DEFAULT_COLORMAPS = {"density": "inferno", "vorticity": "RdBu_r", "speed": "viridis", "pressure": "coolwarm"}

OBSTACLE_RGB = (128, 128, 128)
MIN_LONG_SIDE = 256                 # default upscaling makes the longer image side at least this many pixels
VIDEO_SUFFIXES = (".mp4", ".gif")
_SAMPLES_PER_FRAME = 1 << 20        # percentile estimates use at most this many values per frame
_SAMPLES = 1 << 20                  # ... and at most this many over all frames


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


def _new_figure(figsize, dpi=100):
    """A matplotlib Figure attached to an Agg canvas (no pyplot, no display)."""
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

def field_limits(frames, field, count=None):
    """Colour limits ``(vmin, vmax)`` shared by all ``frames`` (arrays) of ``field``.

    density / speed: ``(min(0, global min), global max)``; vorticity / pressure:
    ``(-a, a)`` with ``a`` the 99.5th percentile of ``|values|`` over all frames
    (the largest ``|value|`` if that percentile is 0, and 1 if all are 0).
    Non-finite values are ignored; ``vmax > vmin`` always holds. With ``count`` (the
    number of frames) ``frames`` may be any iterable, read once, one frame at a time.
    """
    _check_field(field)
    if count is None:
        frames = [_as_numpy(f) for f in frames]
        count = len(frames)
    if not count:
        raise InputError(f"field_limits: no frames given for {field!r}")
    symmetric = field not in ("density", "speed")
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


def to_image(field2d, vmin, vmax, colormap="inferno", obstacle=None, scale=None):
    """A 2-D cell field ``[x, y]`` as a uint8 RGB image ``(H, W, 3)`` with x right and y up.

    Values are mapped linearly from ``[vmin, vmax]`` (clipped) through ``colormap``;
    NaNs take the colormap's "bad" colour. ``obstacle`` (boolean mask, same shape)
    cells are painted mid-gray. Every cell becomes a ``scale × scale`` pixel block
    (nearest neighbour); by default ``scale`` makes the longer side at least 256 px.
    Height and width are always even (mp4/yuv420 needs that): with an explicit
    ``scale`` an odd side is padded by repeating the bottom row / right column.
    """
    f = onp.asarray(_as_numpy(field2d), dtype=onp.float64)
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

    norm = onp.clip((f - vmin) / (vmax - vmin), 0.0, 1.0)  # NaN stays NaN -> "bad" colour
    rgb = _colormap(colormap)(norm, bytes=True)[..., :3]
    if obstacle is not None:
        mask = onp.asarray(_as_numpy(obstacle))
        if mask.shape != f.shape:
            raise InputError(f"to_image: obstacle mask shape {mask.shape} differs from field shape {f.shape}")
        rgb[mask.astype(bool)] = OBSTACLE_RGB
    image = rgb.transpose(1, 0, 2)[::-1]  # [x, y] -> rows = y (top = highest), columns = x
    if scale > 1:
        image = onp.repeat(onp.repeat(image, scale, axis=0), scale, axis=1)
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


def add_arrows(image, velocity_centered, stride=None):
    """``image`` (from :func:`to_image`) with velocity arrows drawn on it, same size.

    ``velocity_centered`` is ``(u, v)``: 2-D arrays ``[x, y]`` at cell centres of the
    imaged grid. One arrow every ``stride`` cells (default: about 16 along the longer
    side); the longest arrow spans about ``stride`` cells. A zero field adds nothing.
    """
    image = _check_image(image, "add_arrows")
    if len(velocity_centered) < 2:
        raise InputError("add_arrows: velocity_centered must hold the components (u, v)")
    u = onp.asarray(_as_numpy(velocity_centered[0]), dtype=onp.float64)
    v = onp.asarray(_as_numpy(velocity_centered[1]), dtype=onp.float64)
    if u.ndim != 2 or u.shape != v.shape:
        raise InputError(f"add_arrows: u and v must be 2-D arrays of one shape, got {u.shape} and {v.shape}")
    nx, ny = u.shape
    h, w = image.shape[:2]
    s = min(w // nx, h // ny)
    if s < 1:
        raise InputError(f"add_arrows: image {w}x{h} px is smaller than the {nx}x{ny} velocity grid")
    if stride is None:
        stride = max(1, max(nx, ny) // 16)
    elif isinstance(stride, bool) or int(stride) != stride or stride < 1:
        raise InputError(f"add_arrows: stride must be a positive integer, got {stride!r}")
    stride = int(stride)

    i0, j0 = stride // 2, stride // 2
    us, vs = u[i0::stride, j0::stride], v[i0::stride, j0::stride]
    speed = onp.hypot(us, vs)
    vmax = float(onp.nanmax(speed)) if onp.isfinite(speed).any() else 0.0
    if not vmax > 0:
        return image.copy()
    xs = onp.arange(i0, nx, stride) + 0.5
    ys = onp.arange(j0, ny, stride) + 0.5
    X, Y = onp.meshgrid(xs, ys, indexing="ij")

    dpi = 100
    fig = _new_figure((w / dpi, h / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    # The image covers x in [0, w/s] and y in [ny - h/s, ny] (any even-padding is at the right / bottom).
    extent = (0.0, w / s, ny - h / s, float(ny))
    ax.imshow(image, extent=extent, origin="upper", interpolation="nearest", aspect="auto")
    ax.quiver(X, Y, onp.nan_to_num(us), onp.nan_to_num(vs), angles="xy", scale_units="xy",
              scale=vmax / (0.9 * stride), color="white", edgecolor="black", linewidth=0.4,
              width=0.004, headwidth=4, pivot="mid")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    fig.canvas.draw()
    out = onp.asarray(fig.canvas.buffer_rgba())[..., :3]
    # Float rounding of the figure size may cost a pixel: crop / edge-pad back to (h, w).
    out = out[:h, :w]
    if out.shape[:2] != (h, w):
        out = onp.pad(out, [(0, h - out.shape[0]), (0, w - out.shape[1]), (0, 0)], mode="edge")
    return onp.ascontiguousarray(out, dtype=onp.uint8)


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
            writer = iio2.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=7,
                                     macro_block_size=1, pixelformat="yuv420p")
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


def render_frames(frames, field, path, *, colormap=None, fps=30, obstacle=None, mode="slice", velocities=None):
    """Render a sequence of ``field`` arrays to the video ``path`` (.mp4 / .gif); returns the Path.

    2-D frames are drawn as they are, 3-D frames after :func:`project_3d` with
    ``mode`` (a 3-D ``obstacle`` mask likewise). All frames share the colour limits
    of :func:`field_limits`, computed on what is drawn. ``colormap`` defaults to
    ``DEFAULT_COLORMAPS[field]``. ``velocities``: optional list (one per frame) of
    cell-centred ``(u, v, ...)`` arrays drawn as arrows (3-D ones: their middle z-plane).
    ``frames`` and ``velocities`` may be :class:`FrameSpool` s: each frame is then read
    twice (the limits, then the images), never all at once.
    """
    _check_field(field)
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise InputError(f"render_frames: unsupported suffix {Path(path).suffix!r} ({path}); use .mp4 or .gif")
    if mode not in ("slice", "max"):
        raise InputError(f"render_frames: unknown mode {mode!r}; expected 'slice' or 'max'")
    colormap = DEFAULT_COLORMAPS[field] if colormap is None else colormap
    _colormap(colormap)

    def flat(a):
        a = _as_numpy(a)
        if a.ndim == 3:
            return project_3d(a, mode)
        if a.ndim != 2:
            raise InputError(f"render_frames: frames must be 2-D or 3-D arrays, got shape {a.shape}")
        return a

    if not isinstance(frames, collections.abc.Sequence):
        frames = list(frames)  # read twice below: the limits, then the images
    if not len(frames):
        raise InputError(f"render_frames: no frames to render to {path}")
    mask = None if obstacle is None else flat(onp.asarray(_as_numpy(obstacle)).astype(bool))
    if velocities is not None and len(velocities) != len(frames):
        raise InputError(f"render_frames: {len(velocities)} velocities for {len(frames)} frames")
    shape = flat(frames[0]).shape

    def frames2d():  # one frame at a time (a FrameSpool keeps them out of memory)
        for k, f in enumerate(frames):
            f = flat(f)
            if f.shape != shape:
                raise InputError(f"render_frames: frame {k} projects to shape {f.shape}, frame 0 to {shape}")
            yield f

    vmin, vmax = field_limits(frames2d(), field, count=len(frames))

    def images():
        for k, f in enumerate(frames2d()):
            im = to_image(f, vmin, vmax, colormap, obstacle=mask)
            if velocities is not None:
                uv = [_as_numpy(c) for c in velocities[k][:2]]
                uv = [c[:, :, c.shape[2] // 2] if c.ndim == 3 else c for c in uv]
                im = add_arrows(im, uv)
            yield im

    return write_video(path, images(), fps=fps)


def render_panel(target, result, path, *, colormap="inferno", obstacle=None):
    """A PNG at ``path`` with three panels side by side: target | result | result − target.

    Target and result share one colour scale (``colormap``); the difference uses
    ``RdBu_r`` with symmetric limits. Arrays are 2-D ``[x, y]``; 3-D ones are
    max-projected over z (an obstacle mask too). Drawn y-up; returns the Path.
    """
    def flat(a, what):
        a = onp.asarray(_as_numpy(a))
        if a.ndim == 3:
            a = project_3d(a, "max")
        if a.ndim != 2:
            raise InputError(f"render_panel: {what} must be 2-D or 3-D, got shape {a.shape}")
        return a

    t, r = flat(target, "target"), flat(result, "result")
    if t.shape != r.shape:
        raise InputError(f"render_panel: target shape {t.shape} differs from result shape {r.shape}")
    mask = None if obstacle is None else flat(onp.asarray(_as_numpy(obstacle)).astype(bool), "obstacle")
    if mask is not None and mask.shape != t.shape:
        raise InputError(f"render_panel: obstacle shape {mask.shape} differs from field shape {t.shape}")
    cmap = _colormap(colormap)
    # limits over the finite values without copying them (a 512² panel's statistics in
    # float64 copies took more memory than the optimization before it)
    lo = min(_finite_min(t), _finite_min(r))
    hi = max(-_finite_min(-t), -_finite_min(-r))
    lo, hi = (0.0, 1.0) if not onp.isfinite(lo) else (lo, hi)
    if not hi > lo:
        hi = lo + 1.0
    diff = r.astype(onp.float64) - t
    a = -_finite_min(-onp.abs(diff))
    a = a if onp.isfinite(a) and a > 0 else 1.0

    nx, ny = t.shape
    panel_h = 3.5
    panel_w = min(max(panel_h * nx / ny, 1.5), 7.0)
    fig = _new_figure((3 * (panel_w + 1.0), panel_h + 0.8))
    axes = fig.subplots(1, 3)
    panels = [(t, "target", cmap, lo, hi), (r, "result", cmap, lo, hi),
              (diff, "result − target", _colormap("RdBu_r"), -a, a)]
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    for ax, (data, title, cm, vmin, vmax) in zip(axes, panels):
        # coloured here, once, to 8-bit RGBA: matplotlib would resample the float field into
        # float64 RGBA images (tens of MiB at 512², above an optimization's peak memory)
        # and every k-th cell only where the grid has more cells than the panel has pixels
        k = max(1, max(nx, ny) // 384)
        norm = Normalize(vmin, vmax)
        ax.imshow(cm(norm(data[::k, ::k].T), bytes=True), origin="lower", extent=(0, nx, 0, ny),
                  interpolation="nearest")
        im = ScalarMappable(norm, cm)
        if mask is not None:
            gray = onp.ma.masked_where(~mask[::k, ::k].T, onp.ones(mask[::k, ::k].T.shape))
            ax.imshow(gray, origin="lower", cmap=_gray_cmap(), vmin=0, vmax=1,
                      extent=(0, nx, 0, ny), interpolation="nearest")
        ax.set_title(title)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
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

    ``history`` is a list of dicts with keys ``"iteration"`` and ``"loss"``.
    Non-finite losses are skipped; if some loss is <= 0 the y-axis is linear.
    """
    history = list(history)
    if not history:
        raise InputError("plot_loss: empty history")
    try:
        its = onp.array([float(h["iteration"]) for h in history])
        losses = onp.array([float(h["loss"]) for h in history])
    except (KeyError, TypeError) as e:
        raise InputError(f"plot_loss: every history entry needs 'iteration' and 'loss' ({e!r})") from None
    keep = onp.isfinite(its) & onp.isfinite(losses)
    its, losses = its[keep], losses[keep]
    fig = _new_figure((6.4, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(its, losses, marker="." if its.size < 50 else None, linewidth=1.2)
    if losses.size and (losses > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.grid(True, which="both", alpha=0.3)
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
