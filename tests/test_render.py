import numpy as np
import pytest

imageio = pytest.importorskip("imageio")
import imageio.v3 as iio  # noqa: E402

from fluidgrad import render  # noqa: E402
from fluidgrad.render import (add_arrows, field_limits, plot_loss, project_3d, read_video_frame_count,  # noqa: E402
                              render_frames, render_panel, to_image, write_png, write_video)


def _moving_blob(n_frames=5, nx=24, ny=16):
    x, y = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    return [np.exp(-((x - 4 - 3 * k) ** 2 + (y - 8) ** 2) / 8.0) for k in range(n_frames)]


def _read_video(path):
    """All frames of a gif / mp4 as one (n, H, W, 3) uint8 array, read back with imageio."""
    return np.stack([f[..., :3] for f in iio.imiter(path)])


def _no_temp_files(folder):
    return [p.name for p in folder.iterdir() if ".tmp" in p.name or p.name.startswith(".")] == []


# ----------------------------------------------------------------------------- images

def test_orientation_top_left_is_x0_ymax():
    f = np.zeros((8, 6))
    f[0, -1] = 1.0  # x = 0, y = max
    im = to_image(f, 0.0, 1.0, "gray", scale=4)
    assert im.shape == (6 * 4, 8 * 4, 3) and im.dtype == np.uint8
    assert (im[:4, :4] == 255).all()          # top-left block is bright
    assert im[4:, :].max() == 0 and im[:, 4:].max() == 0


def test_orientation_x_is_horizontal():
    f = np.zeros((8, 6))
    f[-1, 0] = 1.0  # x = max, y = 0 -> bottom-right
    im = to_image(f, 0.0, 1.0, "gray", scale=2)
    assert (im[-2:, -2:] == 255).all() and im[:-2].max() == 0


def test_obstacle_is_gray():
    f = np.linspace(0, 1, 40).reshape(8, 5)
    mask = np.zeros((8, 5), bool)
    mask[3, 2] = True
    im = to_image(f, 0.0, 1.0, obstacle=mask, scale=2)
    row, col = (5 - 1 - 2) * 2, 3 * 2
    assert (im[row:row + 2, col:col + 2] == 128).all()
    assert not (im[0:2, 0:2] == 128).all()


def test_default_scale_gives_even_readable_size():
    for shape in [(7, 5), (33, 17), (300, 3), (257, 129)]:
        im = to_image(np.random.default_rng(0).random(shape), 0, 1)
        h, w = im.shape[:2]
        assert h % 2 == 0 and w % 2 == 0
        assert max(h, w) >= 256
    im = to_image(np.zeros((5, 3)), 0, 1, scale=3)   # explicit odd scale: padded to even
    assert im.shape == (10, 16, 3)


def test_to_image_errors():
    with pytest.raises(ValueError, match="2-D"):
        to_image(np.zeros((2, 2, 2)), 0, 1)
    with pytest.raises(ValueError, match="vmax > vmin"):
        to_image(np.zeros((2, 2)), 1, 1)
    with pytest.raises(ValueError, match="obstacle"):
        to_image(np.zeros((2, 2)), 0, 1, obstacle=np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match="colormap"):
        to_image(np.zeros((2, 2)), 0, 1, colormap="no-such-map")


def test_fixed_limits_half_values_darker():
    a = np.full((10, 10), 2.0)
    b = a / 2
    vmin, vmax = field_limits([a, b], "density")
    assert (vmin, vmax) == (0.0, 2.0)
    ia, ib = (to_image(f, vmin, vmax, "gray").astype(int) for f in (a, b))
    assert ib.mean() < ia.mean() - 50


def test_limits_density_speed():
    assert field_limits([np.full((3, 3), 5.0)], "speed") == (0.0, 5.0)
    assert field_limits([np.zeros((3, 3))], "density") == (0.0, 1.0)
    assert field_limits([np.full((3, 3), -3.0)], "density") == (-3.0, -2.0)
    assert field_limits([np.array([[-1.0, 4.0]]), np.array([[6.0]])], "density") == (-1.0, 6.0)


def test_symmetric_limits_vorticity_and_pressure():
    rng = np.random.default_rng(1)
    frames = [rng.normal(size=(20, 20)) + 3.0, rng.normal(size=(20, 20))]
    vmin, vmax = field_limits(frames, "vorticity")
    assert vmin == -vmax and vmax > 0
    assert vmax == pytest.approx(np.percentile(np.abs(np.concatenate([f.ravel() for f in frames])), 99.5))
    spike = np.zeros((100, 100))
    spike[0, 0] = -7.0  # percentile is 0 -> max |v|
    assert field_limits([spike], "pressure") == (-7.0, 7.0)
    assert field_limits([np.zeros((4, 4))], "vorticity") == (-1.0, 1.0)
    with pytest.raises(ValueError, match="unknown field"):
        field_limits([spike], "temperature")


# ----------------------------------------------------------------------------- 3-D

def test_project_3d_slice_and_max():
    f = np.arange(4 * 3 * 5, dtype=float).reshape(4, 3, 5)
    s = project_3d(f, "slice")
    assert s.shape == (4, 3) and np.array_equal(s, f[:, :, 2])
    m = project_3d(f, "max")
    assert m.shape == (4, 3) and np.array_equal(m, f[:, :, 4])
    with pytest.raises(ValueError, match="mode"):
        project_3d(f, "mean")
    with pytest.raises(ValueError, match="3-D"):
        project_3d(f[:, :, 0])


# ----------------------------------------------------------------------------- videos

# imageio's legacy ffmpeg reader leaves its pipe handles to the garbage collector (ResourceWarning).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning")
@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_write_video_frame_count_and_content(tmp_path, suffix):
    frames = _moving_blob(6)
    path = render_frames(frames, "density", tmp_path / f"blob{suffix}", fps=10)
    assert path == tmp_path / f"blob{suffix}" and path.stat().st_size > 0
    assert read_video_frame_count(path) == 6
    video = _read_video(path)
    assert video.shape[0] == 6
    assert video.shape[1] % 2 == 0 and video.shape[2] % 2 == 0 and max(video.shape[1:3]) >= 256
    assert video[0].std() > 5                                  # not a blank frame
    assert np.abs(video[0].astype(int) - video[-1].astype(int)).mean() > 1   # frames differ
    assert _no_temp_files(tmp_path)


def test_render_frames_3d_with_obstacle_and_arrows(tmp_path):
    rng = np.random.default_rng(2)
    frames = [rng.normal(size=(12, 10, 6)) for _ in range(3)]
    obstacle = np.zeros((12, 10, 6), bool)
    obstacle[5:7, 4:6, :] = True
    vel = [(np.ones((12, 10)), np.zeros((12, 10))) for _ in range(3)]
    path = render_frames(frames, "vorticity", tmp_path / "v.gif", mode="max", obstacle=obstacle, velocities=vel)
    assert read_video_frame_count(path) == 3


def test_add_arrows_draws_on_image():
    im = to_image(np.zeros((16, 16)), 0, 1)
    u, v = np.ones((16, 16)), np.zeros((16, 16))
    out = add_arrows(im, (u, v), stride=4)
    assert out.shape == im.shape and out.dtype == np.uint8
    assert (out != im).any()
    assert np.array_equal(add_arrows(im, (0 * u, v)), im)


def test_unknown_suffix_error(tmp_path):
    im = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"'\.avi'"):
        write_video(tmp_path / "x.avi", [im])
    with pytest.raises(ValueError, match=r"'\.webm'"):
        render_frames(_moving_blob(2), "density", tmp_path / "x.webm")
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "x.gif", [])
    assert list(tmp_path.iterdir()) == []


def test_write_video_odd_size_mp4(tmp_path):
    ims = [np.full((9, 11, 3), 40 * k, np.uint8) for k in range(3)]
    path = write_video(tmp_path / "odd.mp4", ims, fps=5)
    assert read_video_frame_count(path) == 3


# ----------------------------------------------------------------------------- PNGs

def test_write_png_roundtrip_and_atomic(tmp_path):
    im = to_image(np.random.default_rng(3).random((10, 6)), 0, 1)
    path = write_png(tmp_path / "f.png", im)
    assert np.array_equal(iio.imread(path), im)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


def test_render_panel(tmp_path):
    x, y = np.meshgrid(np.linspace(0, 1, 20), np.linspace(0, 1, 20), indexing="ij")
    target, result = x * y, x * y + 0.1 * x
    obstacle = np.zeros((20, 20), bool)
    obstacle[8:12, 8:12] = True
    path = render_panel(target, result, tmp_path / "panel.png", obstacle=obstacle)
    img = iio.imread(path)
    assert path.stat().st_size > 0 and img.shape[1] > img.shape[0]
    assert img[..., :3].std() > 10
    path3 = render_panel(np.stack([target] * 4, -1), np.stack([result] * 4, -1), tmp_path / "panel3.png")
    img3 = iio.imread(path3)
    assert img3.shape[1] > img3.shape[0]
    assert _no_temp_files(tmp_path)


def test_plot_loss(tmp_path):
    history = [{"iteration": i, "loss": 10.0 * 0.8 ** i} for i in range(30)]
    path = plot_loss(history, tmp_path / "loss.png")
    img = iio.imread(path)
    assert path.stat().st_size > 0 and img.ndim == 3 and img[..., :3].std() > 5
    with pytest.raises(ValueError, match="empty"):
        plot_loss([], tmp_path / "empty.png")
    with pytest.raises(ValueError, match="iteration"):
        plot_loss([{"loss": 1.0}], tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]


def test_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(iio, "imwrite", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_png(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(RuntimeError, match="disk full"):
        write_video(tmp_path / "x.gif", [np.zeros((2, 2, 3), np.uint8)])
    assert list(tmp_path.iterdir()) == []


def test_overwrites_existing_file(tmp_path):
    p = tmp_path / "a.gif"
    p.write_bytes(b"old")
    write_video(p, [np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 200, np.uint8)])
    assert read_video_frame_count(p) == 2
    assert render.VIDEO_SUFFIXES == (".mp4", ".gif")


def test_frame_spool_round_trip_and_video_from_a_spool(tmp_path):
    from fluidgrad.render import FrameSpool
    frames = _moving_blob(6)
    spool = FrameSpool(tmp_path)
    for f in frames:
        spool.append(f.astype(np.float32))
    pairs = FrameSpool(tmp_path)
    pairs.append((np.ones((2, 3)), np.zeros((2, 3), dtype=np.float32)))
    assert len(spool) == 6 and all(np.array_equal(a, b.astype(np.float32)) for a, b in zip(spool, frames))
    assert spool[-1].dtype == np.float32 and [f.shape for f in spool[1:3]] == [(24, 16)] * 2
    u, v = pairs[0]
    assert u.dtype == np.float64 and v.dtype == np.float32 and u.sum() == 6
    from_spool = render_frames(spool, "density", tmp_path / "spool.gif", fps=10)
    from_list = render_frames([f.astype(np.float32) for f in frames], "density", tmp_path / "list.gif", fps=10)
    assert np.array_equal(_read_video(from_spool), _read_video(from_list))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.gif", "spool.gif"]  # the spools have no name
    spool.close()


def test_field_limits_keep_no_copy_of_the_frames():
    import tracemalloc
    frames = [np.random.default_rng(k).random((256, 256), dtype=np.float32) for k in range(20)]  # 5 MiB
    tracemalloc.start()
    limits = field_limits(frames, "density"), field_limits(frames, "vorticity")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert limits[0] == (0.0, max(float(f.max()) for f in frames)) and limits[1][1] > 0.99
    assert peak < 12 * 2 ** 20, peak  # float64 samples of every value took 31 MiB


# ----------------------------------------------------------------------------- decorated frames (issue #18)

from fluidgrad.render import (DecoratedFrames, FrameRenderer, field_info, plot_scale,  # noqa: E402
                              render_image, stamp_text, vorticity_from_centered)


def _cmap_bytes(name, values):
    import matplotlib
    return np.asarray(matplotlib.colormaps[name](np.asarray(values, dtype=float), bytes=True))[..., :3]


def _outside(renderer):
    """A mask of the frame's pixels that are neither the plot (with its frame) nor the stamp."""
    mask = np.ones(renderer.background.shape[:2], bool)
    t, l, h, w = renderer.plot_box
    mask[t - 2:t + h + 2, l - 2:l + w + 2] = False
    t, l, h, w = renderer.stamp_box
    mask[t:t + h, l:l + w] = False
    return mask


def _check_labels(renderer, field, ndim=2, size=None):
    """The figure objects carry the decorations: colorbar label with the field's name and
    units, axes in box units with ticks, the title naming the field (and the 3-D view)."""
    info = field_info(field, ndim)
    assert renderer.labels["colorbar"] == info["label"] and "[" in info["label"]
    ax, cax = renderer.figure.axes[:2]
    bar_label = cax.get_xlabel() if renderer.horizontal_colorbar else cax.get_ylabel()
    assert bar_label == info["label"]
    unit = "L" if size is not None else "cells"
    assert (ax.get_xlabel(), ax.get_ylabel()) == (f"x [{unit}]", f"y [{unit}]")
    if size is not None:
        assert ax.get_xlim() == (0.0, size[0]) and ax.get_ylim() == (0.0, size[1])
    assert len(ax.get_xticks()) >= 3 and len(ax.get_yticks()) >= 2
    titles = [t.get_text() for t in renderer.figure.texts]
    assert any(info["name"] in t for t in titles), titles
    if ndim == 3:
        assert any("over z" in t or "slice z" in t for t in titles), titles


def _check_colorbar(image, renderer, tolerance=24):
    """The colorbar region of ``image`` runs through the colormap from vmin to vmax."""
    t, l, h, w = renderer.colorbar_box
    if renderer.horizontal_colorbar:
        line = image[t + h // 2, l + 3:l + w - 3]
        fractions = (np.arange(l + 3, l + w - 3) - l + 0.5) / w
    else:
        line = image[t + 3:t + h - 3, l + w // 2]
        fractions = 1 - (np.arange(t + 3, t + h - 3) - t + 0.5) / h
    expected = _cmap_bytes(renderer.colormap, fractions)
    err = np.abs(line.astype(int) - expected.astype(int))
    assert np.median(err) <= 6 and np.percentile(err, 95) <= tolerance, (np.median(err), err.max())


def test_plot_box_holds_the_field_exactly_in_nearest_neighbour_blocks():
    rng = np.random.default_rng(5)
    f = rng.random((20, 12))
    f[3, 4] = np.nan
    mask = np.zeros((20, 12), bool)
    mask[10:13, 2:5] = True
    r = FrameRenderer(f.shape, "density", 0.0, 1.0, size=(2.0, 1.2), obstacle=mask)
    s = r.scale
    t, l, h, w = r.plot_box
    assert s == plot_scale(20, 12) == 24 and (h, w) == (12 * s, 20 * s) and max(h, w) >= 480
    im = r.frame(f, "t = 0.5")
    assert im.shape == r.background.shape and im.shape[0] % 2 == 0 and im.shape[1] % 2 == 0
    blocks = im[t:t + h, l:l + w].reshape(12, s, 20, s, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()  # every cell one s × s block: no blur
    cells = blocks[:, 0, :, 0]
    expected = _cmap_bytes("inferno", f.T[::-1])  # matplotlib's own mapping; y up
    expected[mask.T[::-1]] = render.OBSTACLE_RGB
    assert np.array_equal(cells, expected)
    assert np.array_equal(im[t:t + h, l:l + w], r.image(f))
    assert (im[t - 2:t, l:l + w] == 40).all() and (im[t + h:t + h + 2, l:l + w] == 40).all()  # the frame
    # to_image's bare blocks are the same colours
    assert np.array_equal(to_image(f, 0, 1, "inferno", obstacle=mask, scale=s), im[t:t + h, l:l + w])


def test_to_image_colours_are_matplotlibs():
    f = np.random.default_rng(6).normal(size=(33, 17)).astype(np.float32)
    for cmap in ("viridis", "RdBu_r", "gray"):
        im = to_image(f, -1.5, 2.0, cmap, scale=1)
        ref = _cmap_bytes(cmap, np.clip((f.T[::-1].astype(np.float64) + 1.5) / 3.5, 0, 1))
        assert (np.abs(im[:17, :33].astype(int) - ref).max(axis=2) == 0).mean() > 0.999  # float32 rounding at bins


def test_decorations_exist_colorbar_axes_title():
    r = FrameRenderer((64, 64), "speed", 0.0, 2.0, size=(1.0, 1.0))
    _check_labels(r, "speed", size=(1.0, 1.0))
    assert r.labels["colorbar"] == "speed |u| [L/T]"
    assert not r.horizontal_colorbar and r.colorbar_box[1] > r.plot_box[1] + r.plot_box[3]
    _check_colorbar(r.background, r)
    # tick labels (dark pixels) below and left of the plot
    t, l, h, w = r.plot_box
    assert (r.background[t + h + 4:t + h + 30, l:l + w] < 100).any()
    assert (r.background[t:t + h, max(0, l - 40):l - 4] < 100).any()
    wide = FrameRenderer((192, 48), "vorticity", -3.0, 3.0, size=(4.0, 1.0))
    assert wide.horizontal_colorbar and wide.colorbar_box[0] > wide.plot_box[0] + wide.plot_box[2]
    assert wide.plot_box[2] >= 192 and wide.plot_box[3] >= 480  # the 4:1 channel is not 384 x 96
    _check_labels(wide, "vorticity", size=(4.0, 1.0))
    _check_colorbar(wide.background, wide)
    cells = FrameRenderer((8, 8), "density", 0.0, 1.0)
    _check_labels(cells, "density")
    assert cells.labels["colorbar"] == "density [dimensionless]" and cells.plot_box[2] >= 480


def test_time_stamp_changes_between_frames_and_nothing_else_does():
    frames = [np.full((16, 16), 0.5)] * 3
    times, steps = [0.0, 0.05, 0.1], [0, 5, 10]
    d = DecoratedFrames(frames, "density", times=times, steps=steps, size=(1.0, 1.0))
    ims, r = list(d), d.renderer
    assert [stamp_text(k, 3, times, steps) for k in range(3)] == ["t = 0.00   step 0", "t = 0.05   step 5",
                                                                  "t = 0.10   step 10"]
    t, l, h, w = r.stamp_box
    stamps = [im[t:t + h, l:l + w] for im in ims]
    assert all((s < 80).any() for s in stamps)  # dark text
    assert not np.array_equal(stamps[0], stamps[1]) and not np.array_equal(stamps[1], stamps[2])
    glyphs, gw, _ = render._glyphs()
    assert np.array_equal(stamps[1][:, :gw], glyphs["t"]) and np.array_equal(stamps[1][:, 4 * gw:5 * gw], glyphs["0"])
    out = _outside(r)
    for im in ims:
        assert np.array_equal(im[out], r.background[out])  # the decorations: fixed, drawn once
    assert stamp_text(2, 40) == "frame 3/40"
    assert stamp_text(0, 1, [0.015]) == "t = 0.015" and stamp_text(0, 1, [12.0], [600]) == "t = 12.0   step 600"


def test_signed_fields_get_symmetric_limits_and_a_diverging_map_centred_at_zero():
    rng = np.random.default_rng(7)
    for field, cmap in (("vorticity", "RdBu_r"), ("pressure", "coolwarm")):
        info = field_info(field)
        assert info["signed"] and info["colormap"] == cmap
        d = DecoratedFrames([rng.normal(size=(16, 16)) + 2.0], field, size=(1.0, 1.0))
        r = d.renderer
        assert r.vmin == -r.vmax > -np.inf and r.colormap == cmap
        zero = r.image(np.zeros((16, 16)))[0, 0]
        assert np.array_equal(zero, _cmap_bytes(cmap, 0.5))  # 0 sits at the middle of the map
        lo, hi = _cmap_bytes(cmap, 0.0).astype(int), _cmap_bytes(cmap, 1.0).astype(int)
        assert lo[2] > lo[0] and hi[0] > hi[2]  # blue below 0, red above: diverging
        named = DecoratedFrames([rng.normal(size=(16, 16)) + 2.0], field, colormap="viridis").renderer
        assert named.colormap == "viridis" and named.vmin == -named.vmax  # the scenario's map, still centred
    for field in ("density", "speed"):
        r = DecoratedFrames([rng.random((16, 16)) + 1.0], field).renderer
        assert r.vmin == 0.0 and r.vmax > 1.0 and not field_info(field)["signed"]
    magnitude = field_info("vorticity", 3)
    assert not magnitude["signed"] and "|ω|" in magnitude["label"]
    r = DecoratedFrames([np.abs(rng.normal(size=(8, 8, 6)))], "vorticity").renderer
    assert r.vmin == 0.0 and r.colormap == render.MAGNITUDE_COLORMAP


@pytest.mark.parametrize("n", [16, 64, 256])
def test_arrows_keep_their_pixel_spacing_and_size_at_any_resolution(n):
    u, v = np.ones((n, n)), np.zeros((n, n))
    r = FrameRenderer((n, n), "speed", 0.0, 1.0, size=(1.0, 1.0), arrow_max=1.0)
    spacing = r.arrows.stride * r.scale
    assert 24 <= spacing <= 48, spacing
    plain = r.frame(np.ones((n, n)), "")
    drawn = r.frame(np.ones((n, n)), "", (u, v))
    changed = (drawn != plain).any(axis=2)
    arrows = r.arrows.X.size
    assert 8 <= np.sqrt(arrows) <= 30
    per_arrow = changed.sum() / arrows
    assert 0.9 * spacing * 2 <= per_arrow <= spacing * 12, per_arrow  # a 2-px shaft 0.9 spacing long, and a head
    assert not changed[~_plot_mask(r)].any()  # only inside the plot
    # slow flow (1e-4 of the longest arrow: under 6 px even at √ length) draws nothing: no dot noise
    assert np.array_equal(r.frame(np.ones((n, n)), "", (1e-4 * u, v)), plain)
    assert np.array_equal(r.frame(np.ones((n, n)), "", (0 * u, v)), plain)


def _plot_mask(r):
    mask = np.zeros(r.background.shape[:2], bool)
    t, l, h, w = r.plot_box
    mask[t:t + h, l:l + w] = True
    return mask


def test_render_frames_with_times_streams_a_spool_and_reports_its_speed(tmp_path):
    import tracemalloc
    from fluidgrad.render import FrameSpool
    spool = FrameSpool(tmp_path)
    for k in range(40):
        spool.append(np.random.default_rng(k).random((512, 512), dtype=np.float32))  # 1 MiB each
    stats = {}
    render_frames([np.zeros((8, 8))], "density", tmp_path / "warm.mp4", times=[0.0])  # matplotlib's one-off fonts
    tracemalloc.start()
    path = render_frames(spool, "density", tmp_path / "v.mp4", times=[0.1 * k for k in range(40)],
                         steps=list(range(0, 400, 10)), size=(1.0, 1.0), stats=stats)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert stats["frames"] == 40 and stats["frames_per_second"] > 0 and stats["seconds"] > 0
    assert peak < 12 * 2 ** 20, peak  # a few frames' worth, never the 40 MiB of all of them
    video = _read_video(path)
    assert video.shape[1:3] == (stats["height"], stats["width"])
    with pytest.raises(ValueError, match="times"):
        render_frames(spool, "density", tmp_path / "w.mp4", times=[0.0])
    spool.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning")
def test_video_frames_show_the_decorations_and_their_times(tmp_path):
    frames = _moving_blob(4)
    times = [0.04 * k for k in range(4)]
    d = DecoratedFrames(frames, "density", times=times, steps=[2 * k for k in range(4)], size=(2.4, 1.6))
    expected = list(d)
    path = render_frames(frames, "density", tmp_path / "b.mp4", times=times, steps=[2 * k for k in range(4)],
                         size=(2.4, 1.6))
    video = _read_video(path)
    r = d.renderer
    assert video.shape[1:] == r.background.shape
    out = _outside(r)
    for got, want in zip(video, expected):
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 2.0
        assert np.abs(got[out].astype(int) - r.background[out].astype(int)).mean() < 1.0
    t, l, h, w = r.stamp_box
    assert np.abs(video[0, t:t + h, l:l + w].astype(int) - video[1, t:t + h, l:l + w].astype(int)).max() > 100
    _check_colorbar(video[0], r, tolerance=32)


def test_render_image_names_the_3d_view():
    f = np.random.default_rng(8).random((12, 10, 6))
    for mode, words in (("slice", "slice z = 0.35 L"), ("max", "maximum over z")):
        d = DecoratedFrames([f], "density", mode=mode, size=(1.2, 1.0, 0.6), times=[1.5])
        assert words in d.renderer.labels["title"], d.renderer.labels["title"]
        _check_labels(d.renderer, "density", ndim=3, size=(1.2, 1.0, 0.6))
    im = render_image(f, "density", mode="max", size=(1.2, 1.0, 0.6), t=1.5)
    assert im.dtype == np.uint8 and im.shape == d.renderer.background.shape



def test_a_narrow_frame_is_as_wide_as_its_title_and_caption():
    # a tall thin 3-D box: the title (slice, "before optimization") and the arrows' caption are
    # wider than the plot and its colorbar; they were cut at the canvas's edge
    f = np.random.default_rng(2).random((16, 128, 8))
    uv = (np.ones((16, 128, 8)), np.ones((16, 128, 8)))
    d = DecoratedFrames([f], "vorticity", size=(0.25, 2.0, 0.125), velocities=[uv], title="before optimization")
    r = d.renderer
    assert "before optimization" in r.labels["title"] and "arrows" in r.labels["caption"]
    renderer = r.figure.canvas.get_renderer()
    width = r.figure.canvas.get_width_height()[0]
    for text in r.figure.texts:
        assert text.get_window_extent(renderer).x1 < width - 50, text.get_text()
    assert r.background.shape[1] > r.plot_box[1] + r.plot_box[3] + 200
    assert (r.background[:, -4:] == 255).all()  # the crop's white margin: nothing cut at the edge

def test_vorticity_from_centered():
    n, h = 16, 0.25
    x, y = np.meshgrid((np.arange(n) + 0.5) * h, (np.arange(n) + 0.5) * h, indexing="ij")
    w = vorticity_from_centered((-y, x), h)  # solid-body rotation: ω = 2 everywhere, walls too
    assert np.allclose(w, 2.0)
    k = 2 * np.pi / (n * h)
    u, v = np.zeros((n, n)), np.sin(k * x)
    periodic = vorticity_from_centered(np.stack([u, v]), h, (True, True))
    assert np.allclose(periodic, (np.roll(v, -1, 0) - np.roll(v, 1, 0)) / (2 * h))
    z = np.zeros((n, n, 4))
    x3 = np.broadcast_to(x[..., None], z.shape)
    y3 = np.broadcast_to(y[..., None], z.shape)
    assert np.allclose(vorticity_from_centered((-y3, x3, z), h), 2.0)  # 3-D: |ω|


def test_render_vorticity_is_the_videos_vorticity():
    """`fluidgrad render --field vorticity` computes what a video frame shows (periodic box: everywhere)."""
    from fluidgrad import cli
    from fluidgrad.ops.stencils import face_to_center
    from fluidgrad.scenario import load_scenario
    for name, inside in (("taylor_green", slice(None)), ("lid_cavity", slice(1, -1))):
        sc = load_scenario(name, {"grid.resolution": [16, 16]})
        sim = sc.simulation(dtype="float64")
        state = sim.rollout(sc.initial_state(sim), 3, checkpoint=False)
        video = cli._frame_of(state, "vorticity", sim.domain)
        centred = np.stack([np.asarray(c) for c in face_to_center(state.velocity, domain=sim.domain)])
        periodic = [sim.domain.periodic(d) for d in range(2)]
        mine = vorticity_from_centered(centred, sim.domain.dx, periodic)
        assert np.allclose(mine[inside, inside], video[inside, inside], atol=1e-12), name


def _capture_figures(monkeypatch):
    figs = []
    real = render._save_figure

    def save(fig, path):
        figs.append(fig)
        return real(fig, path)
    monkeypatch.setattr(render, "_save_figure", save)
    return figs


def test_panel_has_physical_axes_labelled_colorbars_iteration_and_loss(tmp_path, monkeypatch):
    figs = _capture_figures(monkeypatch)
    x, y = np.meshgrid(np.linspace(0, 1, 20), np.linspace(0, 1, 10), indexing="ij")
    render_panel(x * y, x * y + 0.1 * x, tmp_path / "panel.png", size=(2.0, 1.0), iteration=12, loss=1.25e-3, t=1.0)
    fig = figs[-1]
    assert fig._suptitle.get_text() == "iteration 12 · loss 0.00125 · t = 1.0 T"
    main = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in main] == ["target", "result", "result − target"]
    for ax in main:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("x [L]", "y [L]") and ax.get_xlim() == (0.0, 2.0)
    bars = [ax.get_ylabel() for ax in fig.axes if not ax.get_title()]
    assert bars == ["density [dimensionless]"] * 2 + ["result − target [dimensionless]"]


def test_loss_plot_draws_the_gradient_norm_on_a_second_axis(tmp_path, monkeypatch):
    figs = _capture_figures(monkeypatch)
    history = [{"iteration": 0, "loss": 10.0}] + [{"iteration": i, "loss": 10.0 * 0.8 ** i, "grad_norm": 0.5 ** i}
                                                   for i in range(1, 30)]
    plot_loss(history, tmp_path / "loss.png")
    axes = figs[-1].axes
    assert len(axes) == 2 and axes[1].get_ylabel() == "gradient norm |g|" and axes[1].get_yscale() == "log"
    assert len(axes[1].lines[0].get_xdata()) == 29  # iteration 0 has no gradient norm recorded
    img = iio.imread(tmp_path / "loss.png")[..., :3].astype(int)
    red = (img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 80)
    assert red.sum() > 100
    plot_loss([{"iteration": i, "loss": 1.0 / (i + 1)} for i in range(3)], tmp_path / "plain.png")
    assert len(figs[-1].axes) == 1
    ticks = figs[-1].axes[0].get_xticks()  # whole iterations only (3 points had ticks every 0.25)
    assert np.array_equal(ticks, np.round(ticks)) and {0, 1, 2} <= set(ticks)


# ----------------------------------------------------------------------------- every bundled scenario

SMALL = {"smoke_plume": [24, 32], "smoke_plume_3d": [8, 12, 8], "lid_cavity": [16, 16], "taylor_green": [16, 16],
         "karman_vortex": [48, 12], "smoke_target": [16, 16], "control_to_target": [16, 16],
         "fit_buoyancy": [16, 16], "drag_min": [24, 8]}


@pytest.fixture
def renderers(monkeypatch):
    """Every FrameRenderer made while the test runs."""
    made = []
    init = FrameRenderer.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)
    monkeypatch.setattr(FrameRenderer, "__init__", spy)
    return made


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning")
@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_bundled_scenario_video_and_png_carry_colorbar_name_time_and_axes(name, tmp_path, renderers):
    import json
    from fluidgrad import cli
    from fluidgrad.scenario import bundled_scenarios, load_scenario
    assert set(bundled_scenarios()) == set(SMALL)
    resolution = SMALL[name]
    sc = load_scenario(name, {"grid.resolution": resolution})
    every, video_spec = sc.output["every"], sc.output["video"]
    steps = 2 * every
    assert cli.main(["run", name, "--steps", str(steps), "--set", f"grid.resolution={resolution}",
                     "--out", str(tmp_path), "--quiet"]) == 0
    field, ndim = video_spec["field"], len(resolution)
    (r,) = renderers
    _check_labels(r, field, ndim, size=sc.grid.size)
    video = _read_video(next(tmp_path.glob("*.mp4")))
    assert len(video) == 3 and video.shape[1:] == r.background.shape
    out = _outside(r)
    assert np.abs(video[0][out].astype(int) - r.background[out].astype(int)).mean() < 1.5
    _check_colorbar(video[0], r, tolerance=40)
    t, l, h, w = r.stamp_box
    times = [k * every * sc.dt for k in range(3)]
    for k in range(3):  # each frame's stamp reads "t = ...  step ..."
        want = r.background.copy()
        r._stamp(want, stamp_text(k, 3, times, [k * every for k in range(3)]))
        assert np.abs(video[k, t:t + h, l:l + w].astype(int) - want[t:t + h, l:l + w].astype(int)).mean() < 6
        assert (video[k, t:t + h, l:l + w] < 80).sum() > 40  # dark text there
    assert np.abs(video[0, t:t + h, l:l + w].astype(int) - video[2, t:t + h, l:l + w].astype(int)).max() > 100
    t, l, h, w = r.plot_box
    s = r.scale
    solid = np.asarray(sc.domain().solid)
    solid = solid.any(axis=2) if ndim == 3 and video_spec.get("projection") == "max" else solid
    solid = solid[:, :, solid.shape[2] // 2] if solid.ndim == 3 else solid
    if sc.obstacles:  # the obstacle's cells are gray blocks in every frame, named in the caption
        assert "obstacle" in r.labels["caption"] and solid.any()
        centres = video[:, t + s // 2:t + h:s, l + s // 2:l + w:s].astype(int)  # (frames, ny, nx, 3)
        gray = np.abs(centres - np.array(render.OBSTACLE_RGB)).max(axis=3) <= 12
        assert (gray == solid.T[::-1]).mean() > 0.99, (gray == solid.T[::-1]).mean()
    else:
        assert not solid.any() and "obstacle" not in r.labels["caption"]
    if video_spec.get("arrows"):  # white shafts with black edges on the plot of the moving flow
        assert "arrows" in r.labels["caption"]
        plot = video[2, t:t + h, l:l + w].astype(int)
        white, dark = (plot.min(axis=2) > 225).sum(), (plot.max(axis=2) < 40).sum()
        assert white > 20 * 16 and dark > 20 * 16, (white, dark)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["render"][f"{field}.mp4"]["frames"] == 3 and metrics["render"][f"{field}.mp4"]["frames_per_second"] > 0

    renderers.clear()  # `fluidgrad render` of the result: the same decorations, losslessly
    png = tmp_path / "final.png"
    assert cli.main(["render", str(tmp_path / "result.npz"), "--field", field, "--out", str(png), "--quiet"]) == 0
    (p,) = renderers
    _check_labels(p, field, ndim, size=sc.grid.size)
    image = iio.imread(png)
    assert image.shape == p.background.shape
    assert np.array_equal(image[_outside(p)], p.background[_outside(p)])
    _check_colorbar(image, p)
    want = p.background.copy()
    p._stamp(want, f"t = {steps * sc.dt:.{render._decimals([steps * sc.dt])}f}   step {steps}")
    t, l, h, w = p.stamp_box
    assert np.array_equal(image[t:t + h, l:l + w], want[t:t + h, l:l + w])
    if sc.obstacles:
        pt, pl, ph, pw = p.plot_box
        cells = image[pt + p.scale // 2:pt + ph:p.scale, pl + p.scale // 2:pl + pw:p.scale]
        assert np.array_equal((cells == render.OBSTACLE_RGB).all(axis=2), solid.T[::-1])
    glyphs, gw, _ = render._glyphs()
    assert np.array_equal(image[t:t + h, l:l + gw], glyphs["t"]) and (glyphs["t"] < 80).any()


def test_render_draws_every_field_a_video_can_show(tmp_path, renderers):
    from fluidgrad import cli
    assert cli.main(["run", "karman_vortex", "--steps", "2", "--set", "grid.resolution=[48,12]", "--set",
                     "output.video=false", "--out", str(tmp_path), "--quiet"]) == 0
    for field in render.FIELDS:
        renderers.clear()
        out = tmp_path / f"{field}.png"
        assert cli.main(["render", str(tmp_path / "result.npz"), "--field", field, "--out", str(out), "--quiet"]) == 0
        (r,) = renderers
        _check_labels(r, field, size=(4.0, 1.0))
        assert "obstacle" in r.labels["caption"]  # the cylinder is drawn
        assert r.vmin == -r.vmax if field_info(field)["signed"] else r.vmin == 0.0
    assert cli.main(["render", str(tmp_path / "result.npz"), "--field", "vorticity", "--out",
                     str(tmp_path / "one.gif"), "--quiet"]) == 0
    assert read_video_frame_count(tmp_path / "one.gif") == 1


def test_warm_up_makes_the_glyphs_in_the_background_once(monkeypatch, tmp_path):
    """`fluidgrad run` starts render.warm_up() before its simulation: the first frame's
    fonts and glyphs are made meanwhile (~0.3 s of a short video's render), once."""
    monkeypatch.setattr(render, "_warm_up", [])
    render._glyphs.cache_clear()
    render.warm_up()
    render.warm_up()  # a second call starts nothing
    assert len(render._warm_up) == 1 and render._warm_up[0].name == "fluidgrad-render-warm-up"
    frames = [np.linspace(0, 1, 64 * 48).reshape(64, 48)] * 2
    render.render_frames(frames, "density", tmp_path / "v.mp4", times=[0.0, 0.1], steps=[0, 1])
    assert not render._warm_up[0].is_alive()
    info = render._glyphs.cache_info()
    assert info.misses == 1 and info.hits >= 1, info  # made by the warm-up, used by the video
