"""Image and video metrics: PSNR, SSIM, temporal flicker and loop closure.

Conventions shared by every function here (see docs/metrics.md):

* Images are channels-last, `[..., H, W, C]`; every leading index is one
  "frame" (a single image `[H, W, C]` is one frame, a video `[T, H, W, C]` is
  T frames, a batch `[B, T, H, W, C]` is B*T frames).
* Pixel values are normalised explicitly before any arithmetic:
  `uint8` is divided by 255; floating inputs must lie in `[0, max_val]` (a
  slack of 1e-4 * max_val is clipped away) and are divided by `max_val`.
  Other dtypes raise. All arithmetic is float64 NumPy, so results are exact
  up to float64 rounding and deterministic.
* Masks are `[H, W]` (shared by all frames) or `[..., H, W]` matching the
  images' trailing leading dims; `bool`, or numeric holding only 0 and 1.
  A frame whose mask selects no pixel raises.
* Per-frame PSNR is capped at PSNR_CAP_DB = 100 dB (MSE floored at 1e-10), so an
  identical frame scores 100 dB and a mean over frames stays finite; means over
  frames are plain arithmetic means of the capped values.

Everything is float64 NumPy (not jit-compiled JAX): metrics are run on decoded
uint8 frames after generation, where exactness matters more than speed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

_RANGE_SLACK = 1e-4  # fraction of max_val tolerated outside [0, max_val], then clipped
PSNR_CAP_DB = 100.0  # per-frame PSNR ceiling: identical frames score this, never inf
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


@dataclasses.dataclass(frozen=True)
class FrameMetric:
  """A per-frame metric and its mean.

  Attributes:
    per_frame: float64 array with the images' leading shape (`[T]` for a
      video, `[]` for a single image).
    mean: arithmetic mean over all frames.
  """
  per_frame: np.ndarray
  mean: float


@dataclasses.dataclass(frozen=True)
class FlickerResult:
  """Temporal flicker of a prediction next to that of its ground truth.

  Attributes:
    pred_per_step: `[T-1]` mean |pred[t+1] - pred[t]| (unit range).
    gt_per_step: `[T-1]` the same for ground truth.
    pred: mean of `pred_per_step`.
    gt: mean of `gt_per_step`.
    difference: `pred - gt` (> 0: prediction changes more than ground truth).
    ratio: `pred / gt`; 1.0 when both are 0, inf when only gt is 0.
  """
  pred_per_step: np.ndarray
  gt_per_step: np.ndarray
  pred: float
  gt: float
  difference: float
  ratio: float


@dataclasses.dataclass(frozen=True)
class LoopClosureResult:
  """Error between frames seen at the same camera pose before/after a loop.

  Attributes:
    pairs: `[P, 2]` int frame indices (i, j).
    mae: `[P]` mean absolute error over the static pixels of both frames.
    psnr: `[P]` PSNR in dB over the same pixels (capped at PSNR_CAP_DB).
    mean_mae: mean of `mae` over pairs.
    mean_psnr: mean of `psnr` over pairs.
  """
  pairs: np.ndarray
  mae: np.ndarray
  psnr: np.ndarray
  mean_mae: float
  mean_psnr: float


# ----------------------------------------------------------------------------
# Input checking and normalisation.


def _is_float_dtype(dtype: np.dtype) -> bool:
  return np.issubdtype(dtype, np.floating) or dtype.name in ("bfloat16",)


def check_pixels(x, name: str, max_val: float = 1.0) -> np.ndarray:
  """Validates an image array's dtype and value range without copying it.

  Args:
    x: `[..., H, W, C]` uint8 or float array (NumPy or JAX).
    name: what to call the input in error messages.
    max_val: peak value of float inputs (they must lie in [0, max_val]).

  Returns:
    `x` as a NumPy array (bfloat16 is widened to float32).

  Raises:
    TypeError: unsupported dtype.
    ValueError: non-finite values, values outside the range, bad max_val.
  """
  x = np.asarray(x)
  if not (max_val > 0 and np.isfinite(max_val)):
    raise ValueError(f"max_val must be a positive finite number, got {max_val}")
  if x.dtype == np.uint8:
    if max_val not in (1.0, 255.0):
      raise ValueError(
          f"{name} is uint8 (always normalised by 255) but max_val={max_val}; "
          "leave max_val at 1.0 (or 255.0) for uint8 inputs")
    return x
  if not _is_float_dtype(x.dtype):
    raise TypeError(
        f"{name} has dtype {x.dtype}; expected uint8 in [0, 255] or a float "
        f"dtype in [0, {max_val}]")
  if x.dtype.name == "bfloat16":
    x = x.astype(np.float32)
  if x.size == 0:
    return x
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name} contains NaN or inf values")
  lo, hi = float(x.min()), float(x.max())
  slack = _RANGE_SLACK * max_val
  if lo < -slack or hi > max_val + slack:
    hint = ""
    if lo < 0 and lo >= -1 - slack and hi <= 1 + slack:
      hint = "; values look like [-1, 1]: map them with (x + 1) / 2 first"
    elif hi > 1 + slack and hi <= 255 + slack and max_val == 1.0:
      hint = "; values look like [0, 255]: pass uint8 or max_val=255.0"
    raise ValueError(
        f"{name} float values must lie in [0, {max_val}], found min {lo:.6g} "
        f"and max {hi:.6g}{hint}")
  return x


def to_unit_range(x, name: str = "image", max_val: float = 1.0) -> np.ndarray:
  """Converts uint8 [0, 255] or float [0, max_val] pixels to float64 [0, 1].

  Args:
    x: uint8 or float array of any shape.
    name: what to call the input in error messages.
    max_val: peak value of float inputs.

  Returns:
    float64 array of the same shape with values in [0, 1].
  """
  x = check_pixels(x, name, max_val)
  if x.dtype == np.uint8:
    return x.astype(np.float64) / 255.0
  return np.clip(x.astype(np.float64) / max_val, 0.0, 1.0)


def _check_pair(pred: np.ndarray, gt: np.ndarray, min_hw: int = 1) -> None:
  if pred.shape != gt.shape:
    raise ValueError(
        f"pred shape {pred.shape} != gt shape {gt.shape}; expected identical "
        "[..., H, W, C] shapes")
  if pred.ndim < 3:
    raise ValueError(
        f"images must be [..., H, W, C] with at least 3 dims, got shape "
        f"{pred.shape}")
  h, w, c = pred.shape[-3:]
  if c < 1 or h < min_hw or w < min_hw or pred.size == 0:
    raise ValueError(
        f"images of shape {pred.shape} are too small: need H, W >= {min_hw} "
        "and C >= 1 and at least one frame")


def prepare_mask(mask, lead: tuple[int, ...], height: int, width: int,
                 name: str = "mask") -> np.ndarray:
  """Validates a pixel mask and broadcasts it to `[*lead, H, W]` bool.

  Args:
    mask: `[H, W]` or `[..., H, W]` whose leading dims equal the last ones of
      `lead`; bool, or numeric with only 0 and 1.
    lead: the images' leading (frame) shape.
    height: H.
    width: W.
    name: what to call the mask in error messages.

  Returns:
    bool array `[*lead, H, W]` (a read-only broadcast view).
  """
  m = np.asarray(mask)
  if m.dtype != bool:
    if not np.issubdtype(m.dtype, np.number):
      raise TypeError(f"{name} has dtype {m.dtype}; expected bool or 0/1 numbers")
    bad = (m != 0) & (m != 1)
    if np.any(bad):
      raise ValueError(
          f"{name} must hold only 0 and 1 (or be bool); found value "
          f"{m[bad].flat[0]!r}")
    m = m != 0
  expected = lead + (height, width)
  k = m.ndim - 2
  if (m.ndim < 2 or k > len(lead) or m.shape[-2:] != (height, width)
      or m.shape[:-2] != lead[len(lead) - k:]):
    raise ValueError(
        f"{name} shape {m.shape} does not fit images with frames {lead} of "
        f"size {height}x{width}; expected [H, W] = {(height, width)} or "
        f"[..., H, W] ending in {expected}")
  return np.broadcast_to(m, expected)


def _check_nonempty(counts: np.ndarray, name: str, what: str = "frame") -> None:
  empty = np.argwhere(np.atleast_1d(counts) == 0)
  if empty.size:
    idx = [tuple(int(i) for i in e) if len(e) != 1 else int(e[0])
           for e in empty[:5]]
    raise ValueError(
        f"{name} selects no pixel in {len(empty)} {what}(s), first: {idx}; "
        "every frame needs at least one masked pixel")


def _as_frames(x: np.ndarray) -> np.ndarray:
  return x.reshape((-1,) + x.shape[-3:])


def psnr_from_mse(mse) -> np.ndarray:
  """`min(PSNR_CAP_DB, 10 log10(1 / mse))` elementwise (unit range; mse >= 0)."""
  mse = np.asarray(mse, np.float64)
  return np.minimum(-10.0 * np.log10(np.maximum(mse, 10.0 ** (-PSNR_CAP_DB / 10))),
                    PSNR_CAP_DB)


_psnr_from_mse = psnr_from_mse


# ----------------------------------------------------------------------------
# PSNR.


def psnr(pred, gt, mask=None, max_val: float = 1.0) -> FrameMetric:
  """Peak signal-to-noise ratio per frame, in dB.

  `PSNR = 10 log10(1 / MSE)` on unit-range pixels, MSE over all pixels and
  channels of a frame, or over the masked pixels (all channels) when a mask
  is given. Per-frame values are capped at PSNR_CAP_DB (identical frames give
  exactly 100 dB), so means are always finite.

  Args:
    pred: `[..., H, W, C]` uint8 or float in [0, max_val].
    gt: same shape as `pred`; dtype may differ (each is normalised).
    mask: optional `[H, W]` or `[..., H, W]` pixel mask (e.g. static region).
    max_val: peak value of float inputs.

  Returns:
    FrameMetric with per-frame PSNR of the leading shape and its mean.
  """
  pred = check_pixels(pred, "pred", max_val)
  gt = check_pixels(gt, "gt", max_val)
  _check_pair(pred, gt)
  lead, (h, w, c) = pred.shape[:-3], pred.shape[-3:]
  m = None
  if mask is not None:
    m = prepare_mask(mask, lead, h, w).reshape((-1, h, w))
    _check_nonempty(m.sum(axis=(1, 2)).reshape(lead), "mask")
  pf, gf = _as_frames(pred), _as_frames(gt)
  mse = np.empty(pf.shape[0])
  for i in range(pf.shape[0]):
    se = (to_unit_range(pf[i], "pred", max_val)
          - to_unit_range(gf[i], "gt", max_val)) ** 2
    if m is None:
      mse[i] = se.mean()
    else:
      mse[i] = se.sum(axis=-1)[m[i]].sum() / (m[i].sum() * c)
  values = _psnr_from_mse(mse).reshape(lead)
  return FrameMetric(per_frame=values, mean=float(np.mean(values)))


# ----------------------------------------------------------------------------
# SSIM.


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
  """Normalised 1-D Gaussian taps `[size]` (float64)."""
  r = np.arange(size, dtype=np.float64) - (size - 1) / 2
  w = np.exp(-0.5 * (r / sigma) ** 2)
  return w / w.sum()


def _filter_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
  """Separable 'valid' correlation over axes -3 (H) and -2 (W) of [..., H, W, C]."""
  r = taps.shape[0] // 2
  y = ndimage.correlate1d(x, taps, axis=-3, mode="constant")[..., r:-r, :, :]
  return ndimage.correlate1d(y, taps, axis=-2, mode="constant")[..., r:-r, :]


def ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """SSIM map of two unit-range float64 images, per channel.

  Gaussian window 11x11, sigma 1.5, K1=0.01, K2=0.03, L=1, population
  (not sample) covariances; only windows fully inside the image ("valid").

  Args:
    x: `[H, W, C]` float64 in [0, 1].
    y: same shape.

  Returns:
    `[H-10, W-10, C]` float64 SSIM values.
  """
  taps = gaussian_window()
  stats = _filter_valid(np.stack([x, y, x * x, y * y, x * y]), taps)
  mu_x, mu_y, exx, eyy, exy = stats
  c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
  vx, vy = exx - mu_x * mu_x, eyy - mu_y * mu_y
  cxy = exy - mu_x * mu_y
  num = (2 * mu_x * mu_y + c1) * (2 * cxy + c2)
  den = (mu_x * mu_x + mu_y * mu_y + c1) * (vx + vy + c2)
  return num / den


def ssim(pred, gt, mask=None, max_val: float = 1.0) -> FrameMetric:
  """Structural similarity per frame (Wang et al. 2004), averaged over RGB.

  The SSIM map is computed per channel with an 11x11 Gaussian window
  (sigma 1.5) over windows fully inside the frame, then averaged over
  channels and positions. This equals
  `skimage.metrics.structural_similarity(..., channel_axis=-1,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1)`. With a mask, the channel-averaged map is averaged over the
  masked positions, the mask being cropped by 5 pixels on each side to the
  map's extent (pixel (i, j) of the map is the window centred at
  (i + 5, j + 5)).

  Args:
    pred: `[..., H, W, C]` uint8 or float in [0, max_val]; H, W >= 11.
    gt: same shape as `pred`.
    mask: optional `[H, W]` or `[..., H, W]` pixel mask.
    max_val: peak value of float inputs.

  Returns:
    FrameMetric with per-frame SSIM (1.0 for identical frames) and its mean.
  """
  pred = check_pixels(pred, "pred", max_val)
  gt = check_pixels(gt, "gt", max_val)
  _check_pair(pred, gt, min_hw=SSIM_WINDOW)
  lead, (h, w) = pred.shape[:-3], pred.shape[-3:-1]
  r = SSIM_WINDOW // 2
  m = None
  if mask is not None:
    m = prepare_mask(mask, lead, h, w)[..., r:h - r, r:w - r].reshape(
        (-1, h - 2 * r, w - 2 * r))
    _check_nonempty(m.sum(axis=(1, 2)).reshape(lead),
                    f"mask (cropped by the {r}-pixel SSIM border)")
  pf, gf = _as_frames(pred), _as_frames(gt)
  values = np.empty(pf.shape[0])
  for i in range(pf.shape[0]):
    s = ssim_map(to_unit_range(pf[i], "pred", max_val),
                 to_unit_range(gf[i], "gt", max_val)).mean(axis=-1)
    values[i] = s.mean() if m is None else s[m[i]].mean()
  values = values.reshape(lead)
  return FrameMetric(per_frame=values, mean=float(np.mean(values)))


# ----------------------------------------------------------------------------
# Temporal flicker.


def _check_video(video: np.ndarray, name: str, min_frames: int) -> None:
  if video.ndim != 4 or video.shape[0] < min_frames or video.size == 0:
    raise ValueError(
        f"{name} must be a video [T, H, W, C] with T >= {min_frames}, got "
        f"shape {video.shape}")


def frame_change(video, mask=None, max_val: float = 1.0) -> np.ndarray:
  """Mean absolute change between consecutive frames.

  Args:
    video: `[T, H, W, C]` uint8 or float in [0, max_val], T >= 2.
    mask: optional `[H, W]` or `[T, H, W]`; step t uses the pixels selected
      in both frame t and frame t+1.
    max_val: peak value of float inputs.

  Returns:
    `[T-1]` float64: mean over pixels and channels of |v[t+1] - v[t]| on the
    unit range.
  """
  video = check_pixels(video, "video", max_val)
  _check_video(video, "video", 2)
  t, h, w, c = video.shape
  m = None
  if mask is not None:
    m = prepare_mask(mask, (t,), h, w)
    m = m[1:] & m[:-1]
    _check_nonempty(m.sum(axis=(1, 2)), "mask (frames t and t+1 together)",
                    "step")
  out = np.empty(t - 1)
  prev = to_unit_range(video[0], "video", max_val)
  for i in range(t - 1):
    cur = to_unit_range(video[i + 1], "video", max_val)
    d = np.abs(cur - prev)
    out[i] = d.mean() if m is None else d.sum(axis=-1)[m[i]].sum() / (m[i].sum() * c)
    prev = cur
  return out


def temporal_flicker(pred_video, gt_video, mask=None,
                     max_val: float = 1.0) -> FlickerResult:
  """Frame-to-frame change of a prediction compared with ground truth's.

  `F(v) = mean_t mean_pixels |v[t+1] - v[t]|` (unit range). A generated video
  that flickers has `F(pred) > F(gt)`; one that freezes has `F(pred) < F(gt)`.

  Args:
    pred_video: `[T, H, W, C]` uint8 or float in [0, max_val], T >= 2.
    gt_video: same shape.
    mask: optional `[H, W]` or `[T, H, W]` (e.g. static region).
    max_val: peak value of float inputs.

  Returns:
    FlickerResult with per-step changes of both, their means, difference and
    ratio.
  """
  pred = check_pixels(pred_video, "pred_video", max_val)
  gt = check_pixels(gt_video, "gt_video", max_val)
  if pred.shape != gt.shape:
    raise ValueError(
        f"pred_video shape {pred.shape} != gt_video shape {gt.shape}; expected "
        "identical [T, H, W, C] shapes")
  _check_video(pred, "pred_video", 2)
  fp = frame_change(pred, mask, max_val)
  fg = frame_change(gt, mask, max_val)
  mp, mg = float(fp.mean()), float(fg.mean())
  if mg > 0:
    ratio = mp / mg
  else:
    ratio = 1.0 if mp == 0 else float("inf")
  return FlickerResult(pred_per_step=fp, gt_per_step=fg, pred=mp, gt=mg,
                       difference=mp - mg, ratio=ratio)


# ----------------------------------------------------------------------------
# Loop closure.


def loop_closure_error(video, pose_index_pairs, static_mask,
                       max_val: float = 1.0) -> LoopClosureResult:
  """Error between frames at the same pose before and after a loop.

  For each pair (i, j) the error is measured over the pixels that are static
  in both frames (`static_mask[i] & static_mask[j]`): mean absolute error
  and PSNR on the unit range. Exactly repeated frames give 0 and PSNR_CAP_DB.

  This is the self-consistency of `video` only (it never sees the truth): a frozen
  or copied output scores well. Score revisits against the truth with
  `loops.loop_scores`.

  Args:
    video: `[T, H, W, C]` uint8 or float in [0, max_val].
    pose_index_pairs: `[P, 2]` int frame indices, P >= 1 (e.g. from
      `find_loop_pairs`).
    static_mask: `[H, W]` or `[T, H, W]` True where the scene is static.
    max_val: peak value of float inputs.

  Returns:
    LoopClosureResult.
  """
  video = check_pixels(video, "video", max_val)
  _check_video(video, "video", 1)
  t, h, w, c = video.shape
  pairs = np.asarray(pose_index_pairs)
  if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] == 0:
    raise ValueError(f"pose_index_pairs must be [P, 2] with P >= 1, got shape "
                     f"{pairs.shape} (no loop found? see find_loop_pairs)")
  if not np.issubdtype(pairs.dtype, np.integer):
    raise TypeError(f"pose_index_pairs must be integers, got {pairs.dtype}")
  if pairs.min() < 0 or pairs.max() >= t:
    raise ValueError(f"pose_index_pairs must index frames 0..{t - 1}, found "
                     f"range [{pairs.min()}, {pairs.max()}]")
  m = prepare_mask(static_mask, (t,), h, w, name="static_mask")
  both = m[pairs[:, 0]] & m[pairs[:, 1]]
  _check_nonempty(both.sum(axis=(1, 2)), "static_mask (both frames of a pair)",
                  "pair")
  mae, mse = np.empty(len(pairs)), np.empty(len(pairs))
  for k, (i, j) in enumerate(pairs):
    d = (to_unit_range(video[i], "video", max_val)
         - to_unit_range(video[j], "video", max_val))[both[k]]
    mae[k], mse[k] = np.abs(d).mean(), (d * d).mean()
  ps = _psnr_from_mse(mse)
  return LoopClosureResult(pairs=pairs.astype(np.int64), mae=mae, psnr=ps,
                           mean_mae=float(mae.mean()), mean_psnr=float(ps.mean()))
