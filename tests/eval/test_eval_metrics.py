"""Known-answer tests of realcam_jax.eval.metrics (PSNR, SSIM, flicker, loop closure)."""

import numpy as np
import pytest

from realcam_jax.eval import geometry
from realcam_jax.eval import metrics


def _smooth_image(seed, shape=(48, 40, 3)):
  """uint8 image with structure at several scales (so SSIM is informative)."""
  rng = np.random.default_rng(seed)
  h, w, c = shape
  yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
  img = np.zeros(shape)
  for _ in range(6):
    f = rng.uniform(1, 8, size=2)
    ph = rng.uniform(0, 2 * np.pi, size=c)
    img += np.sin(2 * np.pi * (f[0] * yy + f[1] * xx)[..., None] + ph)
  img += 0.5 * rng.standard_normal(shape)
  img = (img - img.min()) / (img.max() - img.min())
  return np.round(img * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- PSNR


def test_psnr_identical_is_capped_and_mixed_dtypes_agree():
  img = _smooth_image(0)
  out = metrics.psnr(img, img)
  assert out.per_frame.shape == () and out.mean == 100.0 == metrics.PSNR_CAP_DB
  # uint8 and the same values as float in [0, 1] are the same image.
  assert metrics.psnr(img, img.astype(np.float64) / 255).mean == 100.0
  assert metrics.psnr(img, img.astype(np.float32) / 255).mean == 100.0  # float32 rounding only


def test_one_identical_frame_does_not_make_the_mean_infinite():
  gt = np.full((2, 8, 8, 3), 100, np.uint8)
  pred = gt.copy()
  pred[1] += 10                                         # frame 1: 20 log10(25.5) dB
  out = metrics.psnr(pred, gt)
  expected = [100.0, 20 * np.log10(255.0 / 10)]
  np.testing.assert_allclose(out.per_frame, expected, rtol=1e-12)
  assert out.mean == pytest.approx(np.mean(expected), rel=1e-12)
  # The cap is the only change: below it PSNR is 10 log10(1 / MSE) exactly.
  np.testing.assert_allclose(metrics.psnr_from_mse([1e-2, 1e-10, 1e-12, 0.0]),
                             [20.0, 100.0, 100.0, 100.0], rtol=1e-12)


def test_psnr_uniform_offset_is_analytic():
  gt = np.full((3, 16, 16, 3), 100, np.uint8)
  pred = gt + np.array([10, 20, 30], np.uint8)[:, None, None, None]
  out = metrics.psnr(pred, gt)
  expected = 20 * np.log10(255.0 / np.array([10, 20, 30]))
  np.testing.assert_allclose(out.per_frame, expected, rtol=1e-12)
  assert out.mean == pytest.approx(expected.mean(), rel=1e-12)
  # Float input with max_val: same numbers.
  np.testing.assert_allclose(
      metrics.psnr(pred.astype(np.float64), gt.astype(np.float64), max_val=255.0).per_frame,
      expected, rtol=1e-12)
  # 20 log10(1 / d) for a float offset d.
  f = np.full((8, 8, 3), 0.25)
  assert metrics.psnr(f + 0.1, f).mean == pytest.approx(20.0, abs=1e-9)


def test_psnr_leading_dims_and_mean():
  rng = np.random.default_rng(1)
  pred = rng.random((2, 3, 8, 8, 3))
  gt = rng.random((2, 3, 8, 8, 3))
  out = metrics.psnr(pred, gt)
  assert out.per_frame.shape == (2, 3)
  mse = ((pred - gt) ** 2).mean(axis=(-3, -2, -1))
  np.testing.assert_allclose(out.per_frame, -10 * np.log10(mse), rtol=1e-12)
  assert out.mean == pytest.approx(float(out.per_frame.mean()))
  # JAX arrays (bfloat16 included) are accepted and widened.
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  out_bf16 = metrics.psnr(jnp.asarray(pred, jnp.bfloat16), jnp.asarray(gt))
  np.testing.assert_allclose(out_bf16.per_frame, out.per_frame, atol=0.2)


def test_masked_psnr_ignores_unmasked_pixels():
  rng = np.random.default_rng(2)
  gt = 0.9 * rng.random((2, 10, 12, 3))
  mask = np.zeros((10, 12), bool)
  mask[2:7, 3:9] = True
  pred = rng.random(gt.shape)  # garbage outside the mask
  pred[:, mask] = gt[:, mask] + 0.1  # exact offset 0.1 inside
  out = metrics.psnr(pred, gt, mask=mask)
  np.testing.assert_allclose(out.per_frame, [20.0, 20.0], atol=1e-9)
  # Per-frame masks [T, H, W] give the same answer; the unmasked PSNR is lower.
  out2 = metrics.psnr(pred, gt, mask=np.stack([mask, mask]).astype(np.uint8))
  np.testing.assert_allclose(out2.per_frame, out.per_frame)
  assert metrics.psnr(pred, gt).mean < 15


# ----------------------------------------------------------------------------- SSIM


def _ssim_direct(x, y, i, j):
  """SSIM of one window centred at (i, j), straight from the definition."""
  r = np.arange(11) - 5
  g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5 ** 2))
  g /= g.sum()
  vals = []
  for ch in range(x.shape[-1]):
    a = x[i - 5:i + 6, j - 5:j + 6, ch]
    b = y[i - 5:i + 6, j - 5:j + 6, ch]
    ma, mb = (g * a).sum(), (g * b).sum()
    va, vb = (g * (a - ma) ** 2).sum(), (g * (b - mb) ** 2).sum()
    cov = (g * (a - ma) * (b - mb)).sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
  return np.mean(vals)


def test_ssim_identical_is_one():
  img = _smooth_image(3)
  out = metrics.ssim(np.stack([img, img]), np.stack([img, img]))
  np.testing.assert_allclose(out.per_frame, [1.0, 1.0], atol=1e-12)


def test_ssim_map_matches_direct_definition():
  x = _smooth_image(4).astype(np.float64) / 255
  y = _smooth_image(5).astype(np.float64) / 255
  smap = metrics.ssim_map(x, y).mean(axis=-1)
  assert smap.shape == (x.shape[0] - 10, x.shape[1] - 10)
  for i, j in [(5, 5), (20, 17), (x.shape[0] - 6, x.shape[1] - 6)]:
    assert smap[i - 5, j - 5] == pytest.approx(_ssim_direct(x, y, i, j), abs=1e-12)


def test_ssim_matches_skimage():
  skm = pytest.importorskip("skimage.metrics")
  for seed in range(3):
    gt = _smooth_image(10 + seed, (40, 56, 3))
    noise = np.random.default_rng(seed).normal(0, 12 * (seed + 1), gt.shape)
    pred = np.clip(gt + noise, 0, 255).astype(np.uint8)
    ref = skm.structural_similarity(
        pred.astype(np.float64) / 255, gt.astype(np.float64) / 255, channel_axis=-1,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert metrics.ssim(pred, gt).mean == pytest.approx(ref, abs=1e-10)
    # Masked: the channel-mean of skimage's full map over the cropped mask.
    mask = np.zeros(gt.shape[:2], bool)
    mask[8:30, 10:50] = True
    _, full = skm.structural_similarity(
        pred.astype(np.float64) / 255, gt.astype(np.float64) / 255, channel_axis=-1,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
        full=True)
    ref_m = full[5:-5, 5:-5].mean(-1)[mask[5:-5, 5:-5]].mean()
    assert metrics.ssim(pred, gt, mask=mask).mean == pytest.approx(ref_m, abs=1e-10)


def test_ssim_drops_with_shift():
  img = _smooth_image(6, (64, 64, 3))
  gt = img[8:56, 8:56]
  vals = [metrics.ssim(img[8:56, 8 + s:56 + s], gt).mean for s in (0, 1, 2, 4)]
  assert vals[0] == pytest.approx(1.0)
  assert vals[1] < 0.95 and np.all(np.diff(vals) < 0)


# ----------------------------------------------------------------------------- flicker


def test_flicker_static_video_is_zero():
  v = np.repeat(_smooth_image(7)[None], 5, axis=0)
  out = metrics.temporal_flicker(v, v)
  assert out.pred == 0 and out.gt == 0 and out.difference == 0 and out.ratio == 1.0
  np.testing.assert_array_equal(out.pred_per_step, np.zeros(4))


def test_flicker_alternating_frames_is_known():
  a, b = np.full((8, 8, 3), 0.2), np.full((8, 8, 3), 0.6)
  pred = np.stack([a, b, a, b, a])
  gt = np.stack([a, (a + b) / 2, a, (a + b) / 2, a])  # half the swing
  out = metrics.temporal_flicker(pred, gt)
  np.testing.assert_allclose(out.pred_per_step, 0.4, atol=1e-12)
  assert out.gt == pytest.approx(0.2) and out.pred == pytest.approx(0.4)
  assert out.difference == pytest.approx(0.2) and out.ratio == pytest.approx(2.0)
  static = np.stack([a] * 5)
  assert metrics.temporal_flicker(pred, static).ratio == np.inf


def test_flicker_mask_uses_both_frames():
  v = np.zeros((3, 6, 6, 3))
  v[1, :, :3] = 1.0  # left half changes in frames 0->1 and 1->2
  mask = np.zeros((6, 6), bool)
  mask[:, 3:] = True
  out = metrics.temporal_flicker(v, v, mask=mask)
  assert out.pred == 0.0
  np.testing.assert_allclose(metrics.frame_change(v), [0.5, 0.5])
  per_frame = np.ones((3, 6, 6), bool)
  per_frame[1, :, 3:] = False  # step 0 and 1 both see only the left half
  np.testing.assert_allclose(metrics.frame_change(v, per_frame), [1.0, 1.0])


# ----------------------------------------------------------------------------- loop closure


def _yaw_c2w(degrees):
  poses = np.tile(np.eye(4), (len(degrees), 1, 1))
  for k, d in enumerate(np.radians(degrees)):
    poses[k, :3, :3] = [[np.cos(d), 0, np.sin(d)], [0, 1, 0], [-np.sin(d), 0, np.cos(d)]]
  return poses


def test_find_loop_pairs_out_and_back():
  c2w = _yaw_c2w([0, 5, 10, 15, 20, 15, 10, 5, 0])
  pairs = geometry.find_loop_pairs(c2w, rot_eps_deg=0.5, min_departure_deg=4.0)
  np.testing.assert_array_equal(pairs, [[0, 8], [1, 7], [2, 6], [3, 5]])
  # A camera that stands still never closes a loop; translation counts too.
  assert geometry.find_loop_pairs(np.tile(np.eye(4), (6, 1, 1))).shape == (0, 2)
  moved = np.tile(np.eye(4), (3, 1, 1))
  moved[1, 0, 3] = 0.5
  np.testing.assert_array_equal(geometry.find_loop_pairs(moved), [[0, 2]])


def test_rotation_angle_small_and_large():
  for deg in (1e-6, 0.5, 90.0, 179.9):
    r = _yaw_c2w([deg])[0, :3, :3]
    assert geometry.rotation_angle_deg(np.eye(3), r) == pytest.approx(deg, rel=1e-7)


def test_loop_closure_exact_repeat_is_zero_and_offset_is_known():
  frames = np.stack([_smooth_image(20 + k, (16, 16, 3)) for k in range(4)])
  video = np.concatenate([frames, frames[::-1]])  # frames 0..3, 3..0
  c2w = _yaw_c2w([0, 10, 20, 30, 30, 20, 10, 0])
  pairs = geometry.find_loop_pairs(c2w)
  np.testing.assert_array_equal(pairs, [[0, 7], [1, 6], [2, 5]])
  static = np.ones((8, 16, 16), bool)
  out = metrics.loop_closure_error(video, pairs, static)
  np.testing.assert_array_equal(out.mae, 0.0)
  assert out.mean_mae == 0.0 and out.mean_psnr == metrics.PSNR_CAP_DB
  # A moving object (outside the static mask) does not count; an offset does.
  video2 = video.astype(np.float64) / 255
  video2[7] = np.clip(video2[0], 0, 0.9) + 0.1
  video2[0] = np.clip(video2[0], 0, 0.9)
  video2[7, :4, :4] = 1.0 - video2[7, :4, :4]
  static[7, :4, :4] = False
  out = metrics.loop_closure_error(video2, [[0, 7]], static)
  assert out.mae[0] == pytest.approx(0.1) and out.psnr[0] == pytest.approx(20.0)


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("fn", [metrics.psnr, metrics.ssim])
def test_bad_inputs_raise_clear_errors(fn):
  img = np.zeros((2, 16, 16, 3), np.uint8)
  with pytest.raises(ValueError, match=r"pred shape \(2, 16, 16, 3\) != gt shape"):
    fn(img, img[:1])
  with pytest.raises(ValueError, match=r"look like \[-1, 1\]"):
    fn(img.astype(np.float32) - 0.5, img)
  with pytest.raises(ValueError, match=r"look like \[0, 255\]"):
    fn(img.astype(np.float32) + 3, img)
  with pytest.raises(TypeError, match="int16"):
    fn(img.astype(np.int16), img)
  with pytest.raises(ValueError, match="NaN"):
    fn(np.full(img.shape, np.nan), img)
  with pytest.raises(ValueError, match="selects no pixel.*first: \\[1\\]"):
    fn(img, img, mask=np.stack([np.ones((16, 16)), np.zeros((16, 16))]))
  with pytest.raises(ValueError, match=r"mask shape \(16, 15\)"):
    fn(img, img, mask=np.ones((16, 15), bool))
  with pytest.raises(ValueError, match="only 0 and 1"):
    fn(img, img, mask=np.full((16, 16), 0.5))
  with pytest.raises(ValueError, match="uint8"):
    fn(img, img, max_val=2.0)


def test_more_bad_inputs():
  with pytest.raises(ValueError, match="H, W >= 11"):
    metrics.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
  with pytest.raises(ValueError, match="cropped by the 5-pixel"):
    m = np.zeros((16, 16), bool)
    m[:3] = True
    metrics.ssim(np.zeros((16, 16, 3)), np.zeros((16, 16, 3)), mask=m)
  with pytest.raises(ValueError, match="T >= 2"):
    metrics.temporal_flicker(np.zeros((1, 4, 4, 3)), np.zeros((1, 4, 4, 3)))
  v = np.zeros((4, 8, 8, 3))
  with pytest.raises(ValueError, match=r"index frames 0..3"):
    metrics.loop_closure_error(v, [[0, 4]], np.ones((8, 8), bool))
  with pytest.raises(ValueError, match="P >= 1"):
    metrics.loop_closure_error(v, np.zeros((0, 2), int), np.ones((8, 8), bool))
  with pytest.raises(ValueError, match="no pixel in 1 pair"):
    metrics.loop_closure_error(v, [[0, 3]], np.zeros((8, 8), bool))
  bad = np.tile(np.eye(4), (3, 1, 1))
  bad[2, :3, :3] *= 1.2
  with pytest.raises(ValueError, match="pose 2 is not a rotation"):
    geometry.find_loop_pairs(bad)


def test_true_loop_of_the_synthetic_world_closes_exactly():
  """Ground-truth true loop (scene time runs on): static regions repeat exactly, movers do not."""
  synthetic = pytest.importorskip("realcam_jax.data.synthetic")
  loop = synthetic.render_true_loop(2, 9, 64, 64)
  pairs = geometry.find_loop_pairs(loop["c2w"])
  assert len(pairs) >= 1 and [0, 8] in pairs.tolist()
  out = metrics.loop_closure_error(loop["rgb"], pairs, loop["static_mask"])
  np.testing.assert_array_equal(out.mae, 0.0)
  assert out.mean_psnr == metrics.PSNR_CAP_DB
  # Without the static mask, moving objects make the "same" pose differ.
  everywhere = np.ones(loop["static_mask"].shape, bool)
  assert metrics.loop_closure_error(loop["rgb"], [[0, 8]], everywhere).mae[0] > 0
  # A generator that drifts after the turn is penalised.
  drifted = loop["rgb"].astype(np.float64) / 255
  drifted[5:] = np.clip(drifted[5:] * 0.9, 0, 1)
  bad = metrics.loop_closure_error(drifted, pairs, loop["static_mask"])
  assert bad.mean_mae > 0.005 and np.isfinite(bad.mean_psnr)
