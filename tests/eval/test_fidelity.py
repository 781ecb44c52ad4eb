"""Known-answer tests of eval.fidelity (object region, sharpness, references, region scores),
eval.loops (loop closure against the truth) and eval.stats (bootstrap intervals)."""

import numpy as np
import pytest

from realcam_jax.camera.pose import look_at
from realcam_jax.eval import fidelity, loops, metrics, stats


# ----------------------------------------------------------------------------- object region

def _down_camera(height):
  """A camera at (0, 0, height) looking straight down (OpenCV axes), f = 2, 4x4 pixels."""
  c2w = look_at(np.array([0.0, 0.0, height]), np.zeros(3), np.array([0.0, 1.0, 0.0]))
  k = np.array([[2.0, 0, 2.0], [0, 2.0, 2.0], [0, 0, 1]])
  return c2w[None], k


def test_ground_depth_of_a_camera_looking_down_is_its_height():
  c2w, k = _down_camera(3.0)
  g = fidelity.ground_depth(c2w, k, 4, 4)
  np.testing.assert_allclose(g, 3.0, rtol=1e-12)   # z-depth of the plane: the height, everywhere
  # A camera looking at the horizon: rays above it never meet the ground.
  level = look_at(np.array([0.0, 0.0, 1.0]), np.array([0.0, 10.0, 1.0]),
                  np.array([0.0, 0.0, 1.0]))[None]
  g = fidelity.ground_depth(level, k, 4, 4)
  assert np.isinf(g[0, :2]).all() and np.isfinite(g[0, 2:]).all()
  # Row 3 (pixel centre y = 3.5, 0.75 below the axis at f = 2): depth 1 / 0.75.
  np.testing.assert_allclose(g[0, 3], 1 / 0.75, rtol=1e-12)


def test_object_region_is_what_is_neither_sky_nor_ground_dilated():
  c2w, k = _down_camera(3.0)
  depth = np.full((1, 4, 4), 3.0)
  depth[0, 0, 0] = 2.0                               # an object in front of the ground
  depth[0, 3, 3] = 3.0 * (1 + 1e-6)                  # ground, float32-rounded
  got = fidelity.object_region(depth, c2w, k, radius=0)
  want = np.zeros((1, 4, 4), bool)
  want[0, 0, 0] = True
  np.testing.assert_array_equal(got, want)
  # Dilated by 1: the 2x2 corner; by 2: the 3x3 corner.
  np.testing.assert_array_equal(fidelity.object_region(depth, c2w, k, radius=1)[0, :3, :3],
                                [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
  assert fidelity.object_region(depth, c2w, k).sum() == 9
  sky = np.full((1, 4, 4), np.inf)
  assert not fidelity.object_region(sky, c2w, k).any()
  with pytest.raises(ValueError, match="depth has shape"):
    fidelity.object_region(depth[0], c2w, k)


def test_object_region_of_the_synthetic_world_is_the_objects():
  synthetic = pytest.importorskip("realcam_jax.data.synthetic")
  clip = synthetic.sample_clip(2**31, 3, 48, 48, 1)
  raw = fidelity.object_region(clip["target_depth"][0], clip["target_c2w"][0],
                               clip["intrinsics"], radius=0)
  # Every object pixel is nearer than the ground would be; no sky pixel is an object.
  g = fidelity.ground_depth(clip["target_c2w"][0], clip["intrinsics"], 48, 48)
  d = clip["target_depth"][0]
  assert raw.any() and np.all(d[raw] < g[raw] * (1 - 1e-4)) and np.isfinite(d[raw]).all()
  assert 0.02 < raw.mean() < 0.5


# ----------------------------------------------------------------------------- sharpness

def test_gradient_magnitude_and_edge_strength_by_hand():
  x = np.zeros((3, 3, 1))
  x[1, 1, 0] = 1.0                                    # one bright pixel, no prefilter
  g = fidelity.gradient_magnitude(x, prefilter_px=0)
  # (0,0): gx = gy = 0; (0,1): gy = 1; (1,0): gx = 1; (1,1): gx = gy = -1.
  np.testing.assert_allclose(g, [[0.0, 1.0], [1.0, np.sqrt(2.0)]])
  assert fidelity.edge_strength(x, prefilter_px=0) == pytest.approx((2 + np.sqrt(2)) / 4)
  x = np.zeros((4, 4, 1))
  x[:, 2:] = 1.0                                      # a vertical edge: only column 1 sees it
  mask = np.zeros((4, 4), bool)
  mask[:, 1] = True
  assert fidelity.edge_strength(x, mask, prefilter_px=0) == 1.0
  assert fidelity.edge_strength(x, ~mask, prefilter_px=0) == 0.0
  flat = np.full((4, 4, 1), 0.5)
  res = fidelity.sharpness_ratio(flat, x)
  assert (res.pred, res.ratio) == (0.0, 0.0) and res.gt > 0
  assert fidelity.sharpness_ratio(x, x).ratio == 1.0
  assert np.isnan(fidelity.sharpness_ratio(x, flat).ratio)
  assert fidelity.sharpness_ratio(flat, flat).ratio == 1.0
  last_column = np.zeros((4, 4), bool)
  last_column[:, 3] = True                            # no right neighbour anywhere
  with pytest.raises(ValueError, match="selects no pixel"):
    fidelity.edge_strength(x, last_column)


def test_sharpness_is_linear_in_contrast_with_the_prefilter():
  # Filtering and differences are linear: halving the contrast halves the edge strength.
  x = _textured(4, (2, 16, 16, 3))
  half = 0.25 + 0.5 * x
  res = fidelity.sharpness_ratio(half, x)
  assert res.ratio == pytest.approx(0.5, rel=1e-12)
  # The prefilter lowers pixel-scale noise more than a wide edge.
  noise = _textured(5, (1, 32, 32, 1))
  edge = np.zeros((1, 32, 32, 1))
  edge[:, :, 16:] = 1.0
  keep = lambda v: fidelity.edge_strength(v) / fidelity.edge_strength(v, prefilter_px=0)  # noqa: E731
  assert keep(noise) < 0.5 * keep(edge)


def test_row_mean_and_blur_by_hand():
  v = np.zeros((1, 2, 4, 3), np.uint8)
  v[0, 0, :2] = 255                                   # row 0: half white -> 127.5 -> 128
  np.testing.assert_array_equal(fidelity.row_mean(v)[0, 0], np.full((4, 3), 128))
  np.testing.assert_array_equal(fidelity.row_mean(v)[0, 1], 0)
  flat = np.full((1, 8, 8, 3), 77, np.uint8)
  np.testing.assert_array_equal(fidelity.gaussian_blur(flat, 4.0), flat)
  dot = np.zeros((1, 31, 31, 1), np.uint8)
  dot[0, 15, 15] = 255
  blurred = fidelity.gaussian_blur(dot, 2.0)[0, :, :, 0].astype(np.float64)
  # The peak of a unit impulse blurred by sigma 2: 1 / (2 pi sigma^2) of 255 (truncated taps).
  r = np.arange(-8, 9)
  taps = np.exp(-r ** 2 / 8.0)
  taps /= taps.sum()
  assert blurred[15, 15] == np.round(255 * taps[8] ** 2)
  assert blurred[15, 16] == np.round(255 * taps[8] * taps[9])


def _textured(seed, shape=(6, 32, 32, 3)):
  rng = np.random.default_rng(seed)
  base = rng.random(shape[1:])
  return np.stack([np.roll(base, k, axis=1) for k in range(shape[0])])


def test_a_blur_of_the_truth_scores_below_the_truth_on_object_psnr_and_sharpness():
  gt = np.round(_textured(0) * 255).astype(np.uint8)
  obj = np.zeros(gt.shape[:3], bool)
  obj[:, 8:24, 8:24] = True
  exact = fidelity.region_scores(gt, gt, dict(object=obj))
  assert exact["psnr_object"] == metrics.PSNR_CAP_DB and exact["ssim_object"] == 1.0
  for sigma in fidelity.BLUR_SIGMAS:
    b = fidelity.gaussian_blur(gt, sigma)
    s = fidelity.region_scores(b, gt, dict(object=obj))
    assert s["psnr_object"] < 25 and s["ssim_object"] < 0.5
    assert fidelity.sharpness_ratio(b, gt, obj).ratio < 0.5
  assert fidelity.sharpness_ratio(gt, gt, obj).ratio == 1.0


def test_region_scores_equal_the_masked_metrics():
  rng = np.random.default_rng(3)
  gt = np.round(_textured(1, (3, 24, 24, 3)) * 255).astype(np.uint8)
  pred = np.clip(gt.astype(int) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
  m = np.zeros((3, 24, 24), bool)
  m[0, 2:9, 3:20] = True
  m[2, 10:20, 10:20] = True                           # frame 1 empty: NaN, left out of the mean
  out = fidelity.region_scores(pred, gt, dict(all=None, r=m))
  np.testing.assert_allclose(out["psnr_all"], metrics.psnr(pred, gt).mean, rtol=1e-12)
  np.testing.assert_allclose(out["ssim_all"], metrics.ssim(pred, gt).mean, rtol=1e-12)
  keep = [0, 2]
  np.testing.assert_allclose(out["psnr_r"], metrics.psnr(pred[keep], gt[keep], m[keep]).mean,
                             rtol=1e-12)
  assert np.isnan(out["psnr_r_per_frame"][1])
  # SSIM: frame 0's region lies partly in the 5-pixel border, frame 2's inside.
  np.testing.assert_allclose(out["ssim_r"], metrics.ssim(pred[keep], gt[keep], m[keep]).mean,
                             rtol=1e-12)


# ----------------------------------------------------------------------------- loops

def _true_loop():
  synthetic = pytest.importorskip("realcam_jax.data.synthetic")
  from realcam_jax.eval import geometry
  loop = synthetic.render_true_loop(5, 17, 48, 48, start="target")
  src = synthetic.sample_clip(5, 17, 48, 48, 1)["source_rgb"]
  return loop, src, geometry.find_loop_pairs(loop["c2w"])


def test_static_and_blurred_outputs_score_worse_than_a_correct_one_on_a_true_loop():
  loop, src, pairs = _true_loop()
  gt, mask = loop["rgb"], loop["static_mask"]
  assert len(pairs) >= 3
  rng = np.random.default_rng(0)
  # "Correct": the truth with small noise (a good but imperfect re-render).
  good = np.clip(gt.astype(int) + rng.integers(-6, 7, gt.shape), 0, 255).astype(np.uint8)
  frozen = np.repeat(gt[:1], len(gt), 0)             # the first frame held
  blurred = fidelity.gaussian_blur(gt, 4.0)
  s = {name: loops.loop_scores(v, gt, pairs, mask) for name, v in
       dict(truth=gt, good=good, frozen=frozen, blurred=blurred, copy_source=src).items()}
  assert s["truth"]["revisit_psnr_static"] == metrics.PSNR_CAP_DB
  assert s["truth"]["consistency_mae"] == 0.0        # static regions repeat exactly
  for bad in ("frozen", "blurred", "copy_source"):
    for k in ("revisit_psnr_static", "revisit_psnr"):
      assert s["good"][k] > s[bad][k] + 3, (bad, k, s["good"][k], s[bad][k])
    assert s["good"]["revisit_mae_static"] < s[bad]["revisit_mae_static"]
  # The self-consistency column alone would be fooled: the frozen video is perfectly
  # consistent, which is why it is never reported without the revisit columns.
  assert s["frozen"]["consistency_mae"] < s["good"]["consistency_mae"]


def test_loop_scores_without_pairs_are_nan_and_by_hand_with_one():
  gt = np.full((3, 4, 4, 3), 100, np.uint8)
  pred = gt.copy()
  pred[2] += 10
  mask = np.ones((3, 4, 4), bool)
  assert all(np.isnan(v) for v in loops.loop_scores(pred, gt, np.zeros((0, 2)), mask).values())
  s = loops.loop_scores(pred, gt, [[0, 2]], mask)
  assert s["revisit_psnr"] == pytest.approx(20 * np.log10(25.5), rel=1e-12)
  assert s["revisit_mae_static"] == pytest.approx(10 / 255, rel=1e-12)
  assert s["consistency_mae"] == pytest.approx(10 / 255, rel=1e-12)


# ----------------------------------------------------------------------------- stats

def test_bootstrap_by_hand():
  assert stats.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
  assert stats.bootstrap_ci([5.0]) == (5.0, 5.0, 5.0)
  assert all(np.isnan(stats.bootstrap_ci([np.nan, np.inf])))
  # Two scenes 0 and 1: resampled means are 0, 0.5 or 1 with probability 1/4, 1/2, 1/4, so
  # the 2.5th and 97.5th percentiles are 0 and 1.
  assert stats.bootstrap_ci([0.0, 1.0, np.nan]) == (0.5, 0.0, 1.0)
  # Many scenes: about mean +- 1.96 sd / sqrt(n).
  v = np.random.default_rng(1).normal(10.0, 2.0, 400)
  mean, lo, hi = stats.bootstrap_ci(v)
  half = 1.96 * v.std() / np.sqrt(len(v))
  assert mean == pytest.approx(v.mean()) and lo < mean < hi
  assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
  assert stats.bootstrap_ci(v) == (mean, lo, hi)     # fixed seed: reruns agree
  with pytest.raises(ValueError, match="level"):
    stats.bootstrap_ci(v, level=1.5)


def test_paired_beats():
  rng = np.random.default_rng(2)
  ref = rng.normal(20.0, 3.0, 16)                    # scenes differ a lot ...
  better = ref + 0.5 + rng.normal(0, 0.1, 16)        # ... but the gain is consistent
  assert stats.beats(better, ref) and not stats.beats(ref, better)
  assert not stats.beats(ref, ref)
  assert stats.beats(ref, better, higher_is_better=False)
  # Unpaired intervals overlap here; the paired one does not.
  _, lo_b, _ = stats.bootstrap_ci(better)
  _, _, hi_r = stats.bootstrap_ci(ref)
  assert lo_b < hi_r
  mean, lo, hi = stats.paired_difference_ci(better, ref)
  assert 0.4 < lo < mean < hi < 0.6
  with pytest.raises(ValueError, match="one value per scene"):
    stats.paired_difference_ci(ref, ref[:3])
