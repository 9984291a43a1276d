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
