"""Video reading/writing, fitting to the model size, frame rate and length policies."""

import os
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from realcam_jax import camera as cam
from realcam_jax.inference import video_io as vio
from realcam_jax.inference.video_io import VideoError

DATA = os.path.join(os.path.dirname(__file__), "data")
CLIP = os.path.join(DATA, "recammaster_4_160x90_12f.mp4")
REFERENCE = os.path.join(DATA, "recammaster_4.mp4")   # the full 1280x720 source video


def _psnr(a, b):
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def _synthetic(t=10, h=48, w=80):
  """Smooth moving gradients and a blob (h264 keeps these well above 30 dB)."""
  yy, xx = np.mgrid[:h, :w].astype(np.float64)
  frames = []
  for i in range(t):
    blob = 120 * np.exp(-((xx - 10 - 4 * i) ** 2 + (yy - h / 2) ** 2) / 60.0)
    r = 60 + 100 * xx / w + blob
    g = 40 + 150 * yy / h
    b = 128 + 60 * np.sin((xx + yy + 3 * i) / 9.0)
    frames.append(np.stack([r, g, b], -1))
  return np.clip(np.stack(frames), 0, 255).round().astype(np.uint8)


def _blob_centroid(img):
  w = img[..., 0].astype(np.float64)
  w = np.where(w > 0.3 * w.max(), w, 0.0)
  ii, jj = np.indices(w.shape)
  return np.array([(w * (jj + 0.5)).sum(), (w * (ii + 0.5)).sum()]) / w.sum()


def test_write_then_read_back(tmp_path):
  frames = _synthetic()
  out = tmp_path / "clip.mp4"
  vio.write_video(out, frames, fps=15)
  back, fps = vio.read_video(out)
  assert back.shape == frames.shape and back.dtype == np.uint8 and fps == 15.0
  assert _psnr(back, frames) > 30.0
  assert os.listdir(tmp_path) == ["clip.mp4"]
  # Streaming read gives the same frames; max_frames stops early.
  np.testing.assert_array_equal(np.stack(list(vio.iter_video(out))), back)
  first, _ = vio.read_video(out, max_frames=3)
  np.testing.assert_array_equal(first, back[:3])
  assert len(list(vio.iter_video(out, max_frames=4))) == 4


def test_writer_odd_size_fractional_fps_and_frame_by_frame(tmp_path):
  frames = _synthetic(6, 31, 45)
  out = tmp_path / "odd.mp4"
  with vio.VideoWriter(out, fps=30000 / 1001) as writer:
    for f in frames:
      writer.write(f)
  back, fps = vio.read_video(out)
  assert back.shape == (6, 32, 46, 3)  # padded to even by repeating the last row / column
  assert fps == pytest.approx(29.97, abs=0.01)
  assert _psnr(back[:, :31, :45], frames) > 30.0


def test_exception_inside_writer_leaves_no_file(tmp_path):
  out = tmp_path / "result.mp4"
  with pytest.raises(RuntimeError, match="model crashed"):
    with vio.VideoWriter(out, fps=15) as writer:
      writer.write(_synthetic(3))
      raise RuntimeError("model crashed")
  assert os.listdir(tmp_path) == []


def test_failed_write_keeps_an_existing_file_untouched(tmp_path):
  out = tmp_path / "result.mp4"
  out.write_bytes(b"previous result")
  with pytest.raises(VideoError, match="differs from the first frame"):
    with vio.VideoWriter(out, fps=15) as writer:
      writer.write(_synthetic(2, 48, 80))
      writer.write(_synthetic(1, 40, 80))
  with pytest.raises(VideoError, match="no frames were written"):
    with vio.VideoWriter(out, fps=15):
      pass
  with pytest.raises(VideoError, match="uint8"):
    with vio.VideoWriter(out, fps=15) as writer:
      writer.write(np.zeros((2, 8, 8, 3), np.float32))
  assert out.read_bytes() == b"previous result"
  assert os.listdir(tmp_path) == ["result.mp4"]


def test_writer_rejects_bad_arguments(tmp_path):
  with pytest.raises(VideoError, match="does not exist"):
    vio.VideoWriter(tmp_path / "missing" / "a.mp4", fps=15)
  with pytest.raises(VideoError, match="expected a name ending in"):
    vio.VideoWriter(tmp_path / "a.gif", fps=15)
  with pytest.raises(VideoError, match="fps must be a positive number"):
    vio.VideoWriter(tmp_path / "a.mp4", fps=0)
  assert os.listdir(tmp_path) == []


def test_unreadable_inputs_raise_video_error(tmp_path):
  rand = tmp_path / "random.mp4"
  rand.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
  empty = tmp_path / "empty.mp4"
  empty.write_bytes(b"")
  cases = {rand: "not a readable video", empty: "is empty", tmp_path / "nope.mp4": "does not exist",
           tmp_path: "is a directory"}
  for path, message in cases.items():
    with pytest.raises(VideoError, match=message) as e:
      vio.read_video(path)
    assert str(path) in str(e.value)
    with pytest.raises(VideoError, match=message):
      next(vio.iter_video(path))


def test_video_with_zero_frames_raises(tmp_path):
  zero = tmp_path / "zero.mp4"
  subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", CLIP,
                  "-frames:v", "0", "-c:v", "libx264", str(zero)], check=True)
  with pytest.raises(VideoError, match="no video frames") as e:
    vio.read_video(zero)
  assert str(zero) in str(e.value)


@pytest.mark.parametrize("src_hw,out_hw", [((37, 101), (32, 48)), ((200, 30), (48, 64)),
                                           ((90, 160), (480, 832)), ((61, 61), (30, 52))])
@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_fit_frames_size_and_transform(src_hw, out_hw, mode):
  (h, w), (oh, ow) = src_hw, out_hw
  rng = np.random.default_rng(h * w)
  # A smooth blob at a random place well inside the part of the source that stays visible.
  _, tf = vio.fit_frames(np.zeros((h, w, 3), np.uint8), oh, ow, mode=mode)
  lo = np.maximum(-np.array([tf.offset_x / tf.scale_x, tf.offset_y / tf.scale_y]), 0)
  size = np.minimum(np.array([ow / tf.scale_x, oh / tf.scale_y]), [w, h])
  u, v = lo + rng.uniform(0.4, 0.6, 2) * size
  sigma = 0.1 * size.min()
  yy, xx = np.mgrid[:h, :w] + 0.5
  blob = 255 * np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * sigma**2))
  img = np.repeat(blob[..., None], 3, -1).round().astype(np.uint8)
  out, tf = vio.fit_frames(np.stack([img, img]), oh, ow, mode=mode)
  assert out.shape == (2, oh, ow, 3) and out.dtype == np.uint8
  assert tf.out_size == (ow, oh) and tf.in_size == (w, h)
  np.testing.assert_allclose(_blob_centroid(out[0]), tf.apply_points([u, v]),
                             atol=0.6)
  # Intrinsics follow the same map: projecting with the new K == mapping the old pixel.
  K = cam.intrinsics_from_fov(60.0, w, h)
  point = np.array([0.3, -0.2, 2.0])
  uv0 = (K @ point)[:2] / point[2]
  uv1 = (tf.apply_intrinsics(K) @ point)[:2] / point[2]
  np.testing.assert_allclose(uv1, tf.apply_points(uv0), atol=1e-9)
  if mode == "pad":  # the borders are pad_value, the image is inside
    assert tf.offset_x >= 0 and tf.offset_y >= 0
    assert (out[0, :, :tf.offset_x] == 0).all() and (out[0, :tf.offset_y] == 0).all()
  else:
    assert tf.offset_x <= 0 and tf.offset_y <= 0
  single, tf1 = vio.fit_frames(img, oh, ow, mode=mode)
  assert single.shape == (oh, ow, 3) and tf1 == tf


def test_fit_frames_rejects_bad_input():
  with pytest.raises(ValueError, match="uint8"):
    vio.fit_frames(np.zeros((4, 4, 3), np.float32), 2, 2)
  with pytest.raises(ValueError, match="'crop' or 'pad'"):
    vio.fit_frames(np.zeros((4, 4, 3), np.uint8), 2, 2, mode="stretch")


def test_resample_fps():
  np.testing.assert_array_equal(vio.resample_fps(10, 30, 15), [0, 2, 4, 6, 8])
  np.testing.assert_array_equal(vio.resample_fps(24, 24, 15),
                                [0, 2, 3, 5, 6, 8, 10, 11, 13, 14, 16, 18, 19, 21, 22])
  np.testing.assert_array_equal(vio.resample_fps(10, 10, 15),
                                [0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 9, 9])
  assert len(vio.resample_fps(102, 30, 15)) == 51  # duration kept
  assert len(vio.resample_fps(3000, 30000 / 1001, 15)) == 1502
  for n, fin, fout in [(10, 30, 15), (24, 24, 15), (10, 10, 15), (1, 6, 15), (37, 29.97, 15),
                       (5, 15, 15), (0, 30, 15)]:
    streamed = list(vio.iter_resampled(iter(range(n)), fin, fout))
    np.testing.assert_array_equal(streamed, vio.resample_fps(n, fin, fout))
  with pytest.raises(ValueError, match="fps_in"):
    vio.resample_fps(10, 0, 15)


def test_fit_length():
  plan = vio.fit_length(102, chunk_frames=12)  # first frame + chunks of 3 latent frames
  assert (plan.frames_model, plan.padded, plan.dropped, plan.chunks, plan.latent_frames) == (
      109, 7, 0, 9, 28)
  plan = vio.fit_length(102, chunk_frames=12, policy="drop")
  assert (plan.frames_model, plan.padded, plan.dropped, plan.latent_frames) == (97, 0, 5, 25)
  assert vio.fit_length(81).frames_model == 81 and vio.fit_length(81).latent_frames == 21
  assert vio.fit_length(1, chunk_frames=12).frames_model == 1
  assert vio.fit_length(3, chunk_frames=12, policy="drop").frames_model == 1
  frames = np.arange(102)
  padded = vio.apply_length_plan(frames, vio.fit_length(102, chunk_frames=12))
  assert len(padded) == 109 and (padded[101:] == 101).all()
  assert len(vio.apply_length_plan(frames, vio.fit_length(102, chunk_frames=12,
                                                          policy="drop"))) == 97
  with pytest.raises(ValueError, match="multiple of temporal"):
    vio.fit_length(10, chunk_frames=6)


def test_side_by_side():
  a, b = _synthetic(4, 48, 80), _synthetic(4, 24, 30)
  out = vio.side_by_side([a, b, a], ["source", "generated", "ground truth"], separator=3)
  assert out.shape == (4, 48, 80 + 3 + 60 + 3 + 80, 3) and out.dtype == np.uint8
  assert (out[:, :, 80:83] == 255).all()
  assert not np.array_equal(out[:, :12, :40], a[:, :12, :40])  # label drawn
  np.testing.assert_array_equal(out[:, 30:, :80], a[:, 30:])  # rest untouched
  plain = vio.side_by_side([a, a])
  assert plain.shape == (4, 48, 164, 3)
  with pytest.raises(ValueError, match="different frame counts"):
    vio.side_by_side([a, a[:2]])


def test_bundled_reference_clip():
  frames, fps = vio.read_video(CLIP)
  assert frames.shape == (12, 90, 160, 3) and fps == 30.0
  assert 20 < frames.mean() < 235  # real content, not blank


def test_full_reference_video_header_and_first_frames():
  with vio.VideoReader(REFERENCE) as reader:
    assert (reader.width, reader.height, reader.fps) == (1280, 720, 30.0)
    assert reader.duration == pytest.approx(3.4, abs=0.05)  # 102 frames at 30 fps
  frames, _ = vio.read_video(REFERENCE, max_frames=2)
  small, _ = vio.fit_frames(frames, 90, 160)
  clip, _ = vio.read_video(CLIP, max_frames=2)
  assert _psnr(small, clip) > 28.0  # the bundled clip is this video, downscaled
