"""Camera adherence: does a generated video follow the requested trajectory?

Relative poses between frame pairs are recovered from the pixels with OpenCV
(SIFT or ORB features, Lowe ratio test, essential matrix with a robust
estimator -- MAGSAC++ by default, plain RANSAC on request -- and
`cv2.recoverPose`, all with the known intrinsics K) and compared with the
relative poses of the requested camera-to-world trajectory (OpenCV axes:
x right, y down, z forward); see `geometry` for the relative-pose convention
(`X_j = R X_i + t`, `[R | t] = inv(c2w_j) @ c2w_i`). Essential-matrix poses
are refined on their inliers by robust least squares (Sampson distance).

* RotErr: geodesic angle between estimated and requested R, degrees.
* TransErr: angle between estimated and requested translation directions,
  degrees (in [0, 180]; the sign of t is fixed by the cheirality check).
  Undefined (NaN, flagged) when the requested baseline is below
  `min_translation`: with a baseline that is small compared with the scene
  depth, translation and rotation explain the flow almost equally and the
  direction is noise. Below `ROTATION_ONLY_FRACTION * min_translation` (e.g. a
  pure pan) the essential matrix is degenerate, so R comes from a homography
  (`H = K R K^-1` for a purely rotating camera) instead.
* K follows the project's pixel convention (centre of pixel (row i, column j)
  at (j + 0.5, i + 0.5), a centred principal point is (W/2, H/2)); keypoints
  from OpenCV are shifted by +0.5 to match.
* A pair whose estimation fails (too few matches or inliers, degenerate
  geometry) gives NaN errors and is counted in `n_failed`; nothing raises on
  image content.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from realcam_jax.eval import geometry
from realcam_jax.eval import metrics

# Project pixel convention (realcam_jax.camera.intrinsics): the centre of pixel
# (row i, column j) is (u, v) = (j + 0.5, i + 0.5). OpenCV keypoints use
# (j, i), so detected points are shifted by this before meeting K.
PIXEL_CENTER = 0.5
# Rendered and generated frames are smooth and hazy: OpenCV's default SIFT
# contrast threshold (0.04) finds ~20 keypoints on a 256x256 synthetic frame.
# Local histogram equalisation (CLAHE) and a lower threshold find ~10x more.
SIFT_CONTRAST = 0.01
CLAHE_CLIP = 2.0
# Small frames are upsampled (bicubic, integer factor <= MAX_UPSAMPLE) until the
# short side reaches DETECT_MIN_SIDE: at 256x256 this halves failed pairs on
# synthetic renders.
DETECT_MIN_SIDE = 400
MAX_UPSAMPLE = 4
# Strongest keypoints kept per frame (bounds the exact brute-force matching).
MAX_FEATURES = 2000
# Pairs whose requested baseline is below this fraction of `min_translation`
# are estimated as pure rotations (homography): the essential matrix is
# degenerate there. Between this and `min_translation` the essential matrix
# still gives the better rotation, but the translation direction is too
# ill-conditioned to score.
ROTATION_ONLY_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class PoseEstimate:
  """Relative pose of frame j w.r.t. frame i recovered from pixels.

  Attributes:
    rotation: `[3, 3]` R with X_j = R X_i + t (NaN when failed).
    translation: `[3]` unit-norm t (NaN when failed or rotation-only).
    n_matches: matches passing the ratio test.
    n_inliers: RANSAC inliers (passing cheirality for the essential matrix).
    ok: whether estimation succeeded.
    reason: "" when ok, else why it failed.
  """
  rotation: np.ndarray
  translation: np.ndarray
  n_matches: int
  n_inliers: int
  ok: bool
  reason: str = ""


@dataclasses.dataclass(frozen=True)
class AdherenceResult:
  """Per-pair and aggregate camera adherence.

  Attributes:
    pairs: `[P, 2]` frame indices (i, j).
    rot_err_deg: `[P]` RotErr (NaN for failed pairs).
    trans_err_deg: `[P]` TransErr (NaN for failed or translation-free pairs).
    failed: `[P]` bool, estimation failed.
    trans_undefined: `[P]` bool, requested translation below threshold.
    n_inliers: `[P]` int inlier counts.
    mean_rot_err_deg, median_rot_err_deg: over successful pairs (NaN if none).
    mean_trans_err_deg, median_trans_err_deg: over successful pairs with a
      defined translation (NaN if none).
    n_pairs, n_failed, n_trans_undefined: counts.
  """
  pairs: np.ndarray
  rot_err_deg: np.ndarray
  trans_err_deg: np.ndarray
  failed: np.ndarray
  trans_undefined: np.ndarray
  n_inliers: np.ndarray
  mean_rot_err_deg: float
  median_rot_err_deg: float
  mean_trans_err_deg: float
  median_trans_err_deg: float
  n_pairs: int
  n_failed: int
  n_trans_undefined: int

  def summary(self) -> dict:
    """JSON-ready aggregate numbers."""
    return {k: getattr(self, k) for k in (
        "mean_rot_err_deg", "median_rot_err_deg", "mean_trans_err_deg",
        "median_trans_err_deg", "n_pairs", "n_failed", "n_trans_undefined")}


def frame_pairs(num_frames: int, mode: str = "first", stride: int = 1) -> np.ndarray:
  """Frame pairs to evaluate.

  Args:
    num_frames: T.
    mode: "first": (0, j) for j = stride, 2*stride, ...; "consecutive":
      (j - stride, j) for j = stride, 2*stride, ...
    stride: frame step, >= 1.

  Returns:
    `[P, 2]` int64 pairs (P = 0 when T <= stride).
  """
  if stride < 1:
    raise ValueError(f"stride must be >= 1, got {stride}")
  j = np.arange(stride, num_frames, stride, dtype=np.int64)
  if mode == "first":
    return np.stack([np.zeros_like(j), j], axis=1)
  if mode == "consecutive":
    return np.stack([j - stride, j], axis=1)
  raise ValueError(f"mode must be 'first' or 'consecutive', got {mode!r}")


# ----------------------------------------------------------------------------
# Features and estimation.


def _to_gray_u8(frame: np.ndarray, max_val: float):
  import cv2  # pylint: disable=g-import-not-at-top
  x = np.clip(np.round(metrics.to_unit_range(frame, "frame", max_val) * 255), 0, 255)
  x = x.astype(np.uint8)
  if x.shape[-1] == 1:
    return x[..., 0]
  return cv2.cvtColor(np.ascontiguousarray(x[..., :3]), cv2.COLOR_RGB2GRAY)


def _detector(name: str):
  import cv2  # pylint: disable=g-import-not-at-top
  if name == "sift":
    return (cv2.SIFT_create(nfeatures=MAX_FEATURES, contrastThreshold=SIFT_CONTRAST),
            cv2.NORM_L2)
  if name == "orb":
    return cv2.ORB_create(nfeatures=MAX_FEATURES), cv2.NORM_HAMMING
  raise ValueError(f"detector must be 'sift' or 'orb', got {name!r}")


def detect(frame, detector: str = "sift", max_val: float = 1.0, mask=None):
  """Keypoints and descriptors of one frame.

  The frame is converted to 8-bit grey, upsampled by an integer factor when
  its short side is below DETECT_MIN_SIDE, and locally equalised (CLAHE,
  clip 2, 8x8 tiles) before detection; points are in original pixels.

  Args:
    frame: `[H, W, C]` uint8 or float in [0, max_val] (C = 1 or 3, RGB).
    detector: "sift" or "orb".
    max_val: peak value of float inputs.
    mask: optional `[H, W]` bool; keypoints only where True.

  Returns:
    (points `[N, 2]` float64 pixel (u, v) in the project's convention, pixel
    (row i, column j) centred at (j + 0.5, i + 0.5); descriptors `[N, D]` or
    None).
  """
  import cv2  # pylint: disable=g-import-not-at-top
  det, _ = _detector(detector)
  frame = np.asarray(frame)
  if frame.ndim != 3 or frame.shape[-1] not in (1, 3) or min(frame.shape[:2]) < 1:
    raise ValueError(f"frame must be [H, W, 1 or 3], got shape {frame.shape}")
  gray = _to_gray_u8(frame, max_val)
  up = int(min(MAX_UPSAMPLE, max(1, np.ceil(DETECT_MIN_SIDE / min(gray.shape)))))
  if up > 1:
    gray = cv2.resize(gray, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
  gray = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(8, 8)).apply(gray)
  m8 = None
  if mask is not None:
    m8 = np.asarray(mask, bool).astype(np.uint8)
    if m8.shape != frame.shape[:2]:
      raise ValueError(f"mask shape {m8.shape} != frame size {frame.shape[:2]}")
    if up > 1:
      m8 = cv2.resize(m8, None, fx=up, fy=up, interpolation=cv2.INTER_NEAREST)
  kps, desc = det.detectAndCompute(gray, m8)
  # OpenCV puts pixel centres at integers, the project at half-integers; the
  # centre of upsampled pixel p' lies at (p' + 0.5) / up in the original.
  pts = (np.array([kp.pt for kp in kps], np.float64).reshape(-1, 2)
         + PIXEL_CENTER) / up
  return pts, desc


def match(desc_i, desc_j, detector: str = "sift", ratio: float = 0.75) -> np.ndarray:
  """Lowe ratio-test matches between descriptor sets; `[M, 2]` index pairs."""
  import cv2  # pylint: disable=g-import-not-at-top
  if desc_i is None or desc_j is None or len(desc_i) < 2 or len(desc_j) < 2:
    return np.zeros((0, 2), np.int64)
  _, norm = _detector(detector)
  knn = cv2.BFMatcher(norm).knnMatch(desc_i, desc_j, k=2)
  good = [(m[0].queryIdx, m[0].trainIdx) for m in knn
          if len(m) == 2 and m[0].distance < ratio * m[1].distance]
  return np.array(good, np.int64).reshape(-1, 2)


# Robust estimators for the essential matrix / homography. OpenCV's plain RANSAC
# returns the best minimal-sample model without local optimisation (~7 deg of
# translation-direction error on clean synthetic matches before our inlier
# refinement, ~1 deg for MAGSAC++); after refinement both agree to ~0.5 deg.
ROBUST_METHODS = ("magsac", "ransac", "usac_accurate")


def _robust_method(name: str) -> int:
  import cv2  # pylint: disable=g-import-not-at-top
  flags = {"magsac": cv2.USAC_MAGSAC, "ransac": cv2.RANSAC,
           "usac_accurate": cv2.USAC_ACCURATE}
  if name not in flags:
    raise ValueError(f"robust must be one of {ROBUST_METHODS}, got {name!r}")
  return flags[name]


def _fail(reason: str, n_matches: int = 0, n_inliers: int = 0) -> PoseEstimate:
  return PoseEstimate(np.full((3, 3), np.nan), np.full(3, np.nan), n_matches,
                      n_inliers, False, reason)


def estimate_from_points(pts_i, pts_j, k, *, rotation_only: bool = False,
                         robust: str = "magsac", ransac_threshold_px: float = 1.0,
                         min_inliers: int = 40) -> PoseEstimate:
  """Relative pose from matched pixel coordinates.

  Args:
    pts_i: `[M, 2]` float pixel (u, v) in frame i (project convention, see
      `detect`).
    pts_j: `[M, 2]` matching pixels in frame j.
    k: `[3, 3]` intrinsics.
    rotation_only: fit a homography and take R = proj_SO3(K^-1 H K) (for a
      camera that only rotates); otherwise essential matrix + recoverPose.
    robust: robust estimator, see `ROBUST_METHODS`.
    ransac_threshold_px: RANSAC inlier threshold in pixels.
    min_inliers: fewer inliers than this is a failure.

  Returns:
    PoseEstimate (never raises on degenerate input).
  """
  import cv2  # pylint: disable=g-import-not-at-top
  pts_i = np.ascontiguousarray(pts_i, np.float64).reshape(-1, 2)
  pts_j = np.ascontiguousarray(pts_j, np.float64).reshape(-1, 2)
  n = len(pts_i)
  need = max(min_inliers, 8)
  if n < need:
    return _fail(f"{n} matches < {need}", n)
  flag = _robust_method(robust)
  cv2.setRNGSeed(0)
  try:
    if rotation_only:
      h, mask = cv2.findHomography(pts_i, pts_j, flag, ransac_threshold_px,
                                   maxIters=10000, confidence=0.9999)
      if h is None or mask is None:
        return _fail("homography estimation failed", n)
      n_in = int(mask.sum())
      if n_in < need:
        return _fail(f"{n_in} homography inliers < {need}", n, n_in)
      r = geometry.project_to_rotation(np.linalg.inv(k) @ h @ k)
      return PoseEstimate(r, np.full(3, np.nan), n, n_in, True)
    e, mask = cv2.findEssentialMat(pts_i, pts_j, k, method=flag, prob=0.9999,
                                   threshold=ransac_threshold_px)
    if e is None or mask is None or e.shape[0] < 3:
      return _fail("essential matrix estimation failed", n)
    best = None
    for sol in range(e.shape[0] // 3):  # the 5-point solver may return several E
      n_good, r, t, good = cv2.recoverPose(e[3 * sol:3 * sol + 3], pts_i, pts_j,
                                           k, mask=mask.copy())
      if best is None or n_good > best[0]:
        best = (int(n_good), r, t.reshape(3), good.reshape(-1) > 0)
    n_good, r, t, good = best
    if n_good < need:
      return _fail(f"{n_good} cheirality inliers < {need}", n, n_good)
    r, t = geometry.refine_relative_pose(r, t, pts_i[good], pts_j[good], k,
                                         ransac_threshold_px)
    return PoseEstimate(r, t, n, n_good, True)
  except cv2.error as err:  # degenerate configurations
    return _fail(f"OpenCV error: {str(err).strip().splitlines()[-1]}", n)


def relative_pose(frame_i, frame_j, k, *, detector: str = "sift",
                  ratio: float = 0.75, rotation_only: bool = False,
                  robust: str = "magsac", ransac_threshold_px: float = 1.0,
                  min_inliers: int = 40,
                  max_val: float = 1.0) -> PoseEstimate:
  """Relative pose of frame j w.r.t. frame i recovered from the images.

  Args:
    frame_i: `[H, W, C]` uint8 or float in [0, max_val].
    frame_j: same shape.
    k: `[3, 3]` intrinsics of both frames.
    detector: "sift" or "orb".
    ratio: Lowe ratio-test threshold.
    rotation_only: see `estimate_from_points`.
    robust: robust estimator, see `ROBUST_METHODS`.
    ransac_threshold_px: RANSAC inlier threshold in pixels.
    min_inliers: fewer inliers than this is a failure.
    max_val: peak value of float inputs.

  Returns:
    PoseEstimate.
  """
  k = geometry.check_intrinsics(k)
  pi, di = detect(frame_i, detector, max_val)
  pj, dj = detect(frame_j, detector, max_val)
  mm = match(di, dj, detector, ratio)
  return estimate_from_points(pi[mm[:, 0]], pj[mm[:, 1]], k,
                              rotation_only=rotation_only, robust=robust,
                              ransac_threshold_px=ransac_threshold_px,
                              min_inliers=min_inliers)


def _nan_stat(fn, x: np.ndarray) -> float:
  x = x[np.isfinite(x)]
  return float(fn(x)) if x.size else float("nan")


def camera_adherence(video, c2w, k, *, pairs=None, mode: str = "first",
                     stride: int = 1, mask=None, min_translation: float = 0.5,
                     detector: str = "sift", ratio: float = 0.75,
                     robust: str = "magsac", ransac_threshold_px: float = 1.0,
                     min_inliers: int = 40,
                     max_val: float = 1.0) -> AdherenceResult:
  """Compares camera motion recovered from a video with the requested one.

  Args:
    video: `[T, H, W, C]` uint8 or float in [0, max_val] (generated frames).
    c2w: `[T, 4, 4]` requested camera-to-world poses, OpenCV axes.
    k: `[3, 3]` intrinsics at the video's resolution.
    pairs: optional `[P, 2]` frame index pairs; default from `frame_pairs(T,
      mode, stride)`.
    mode: "first" or "consecutive" (used when `pairs` is None).
    stride: frame step (used when `pairs` is None).
    mask: optional `[H, W]` or `[T, H, W]` bool; features are detected only
      where True (e.g. the rendered static mask of the requested view, to
      ignore moving objects).
    min_translation: requested baseline (camera-centre displacement, scene
      units) below which a pair's translation direction counts as
      unobservable and its TransErr is undefined; below
      `ROTATION_ONLY_FRACTION` of it the pair is estimated as a pure
      rotation (homography). Translation is only measurable when the baseline
      is a few percent of the scene depth; the default 0.5 suits the
      synthetic world (cameras 6-10 m from the content). Scale it with the
      scene, e.g. 0.05 * median depth.
    detector: "sift" or "orb".
    ratio: Lowe ratio-test threshold.
    robust: robust estimator, see `ROBUST_METHODS`.
    ransac_threshold_px: RANSAC inlier threshold in pixels.
    min_inliers: fewer inliers than this is a failure (below ~40, solutions
      on synthetic renders are often wrong by tens of degrees).
    max_val: peak value of float inputs.

  Returns:
    AdherenceResult; failures are NaN and counted, never raised.
  """
  video = metrics.check_pixels(video, "video", max_val)
  if video.ndim != 4 or video.shape[0] < 2 or video.size == 0:
    raise ValueError(f"video must be [T, H, W, C] with T >= 2, got shape {video.shape}")
  poses = geometry.check_poses(c2w)
  if poses.shape[0] != video.shape[0]:
    raise ValueError(f"c2w has {poses.shape[0]} poses but video has "
                     f"{video.shape[0]} frames; expected one pose per frame")
  k = geometry.check_intrinsics(k)
  _robust_method(robust)
  _detector(detector)
  t = video.shape[0]
  pairs = frame_pairs(t, mode, stride) if pairs is None else np.asarray(pairs)
  if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
    raise ValueError(f"pairs must be [P, 2] with P >= 1, got shape {pairs.shape}")
  if not np.issubdtype(pairs.dtype, np.integer) or pairs.min() < 0 or pairs.max() >= t:
    raise ValueError(f"pairs must be integer frame indices in 0..{t - 1}")

  if mask is not None:
    mask = metrics.prepare_mask(mask, (t,), video.shape[1], video.shape[2])
  feats = {}
  for idx in np.unique(pairs):
    feats[int(idx)] = detect(video[idx], detector, max_val,
                             None if mask is None else mask[idx])
  n = len(pairs)
  rot_err, trans_err = np.full(n, np.nan), np.full(n, np.nan)
  failed, undefined = np.zeros(n, bool), np.zeros(n, bool)
  inliers = np.zeros(n, np.int64)
  for p, (i, j) in enumerate(pairs):
    r_gt, t_gt = geometry.relative_pose_gt(poses[i], poses[j])
    baseline = np.linalg.norm(t_gt)
    undefined[p] = baseline < min_translation
    (pi, di), (pj, dj) = feats[int(i)], feats[int(j)]
    mm = match(di, dj, detector, ratio)
    est = estimate_from_points(pi[mm[:, 0]], pj[mm[:, 1]], k,
                               rotation_only=bool(baseline < ROTATION_ONLY_FRACTION
                                                  * min_translation),
                               robust=robust,
                               ransac_threshold_px=ransac_threshold_px,
                               min_inliers=min_inliers)
    inliers[p] = est.n_inliers
    if not est.ok:
      failed[p] = True
      continue
    rot_err[p] = geometry.rotation_angle_deg(est.rotation, r_gt)
    if not undefined[p]:
      trans_err[p] = geometry.translation_angle_deg(est.translation, t_gt)
  return AdherenceResult(
      pairs=pairs.astype(np.int64), rot_err_deg=rot_err, trans_err_deg=trans_err,
      failed=failed, trans_undefined=undefined, n_inliers=inliers,
      mean_rot_err_deg=_nan_stat(np.mean, rot_err),
      median_rot_err_deg=_nan_stat(np.median, rot_err),
      mean_trans_err_deg=_nan_stat(np.mean, trans_err),
      median_trans_err_deg=_nan_stat(np.median, trans_err),
      n_pairs=int(n), n_failed=int(failed.sum()),
      n_trans_undefined=int(undefined.sum()))
