"""Scores a blur cannot pass: object region, sharpness ratio, per-region PSNR / SSIM, and
the reference images built from the truth (Gaussian blur, row mean).

Conventions as in `metrics` (channels-last `[..., H, W, C]`, uint8 or unit-range float,
float64 arithmetic, docs/metrics.md):

* object region: the pixels whose truth sees an object (not sky, not ground), found from
  the renderer's z-depth: a pixel sees the ground iff its depth equals the depth at which
  its ray meets the plane z = 0; sky has depth inf. The region is dilated by
  OBJECT_DILATE_PX pixels (a (2r+1) x (2r+1) square) so that the object's silhouette
  edge counts.
* sharpness: the edge strength of a video, its mean gradient magnitude after a Gaussian
  prefilter of SHARPNESS_PREFILTER_PX (so pixel-scale aliasing does not dominate) over a
  region, pooled over frames; the ratio pred / truth is 1 for a video as sharp as the
  truth, < 1 for a blurrier one, > 1 for a noisier one.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from realcam_jax.eval import metrics

OBJECT_DILATE_PX = 2
GROUND_RTOL = 1e-4     # a depth within this relative distance of the ground plane is ground
BLUR_SIGMAS = (2.0, 4.0, 8.0)
# Sharpness is measured above pixel scale: the synthetic renders alias at the pixel, and
# on that energy even the VAE round trip kept 2.5% (docs/metrics.md).
SHARPNESS_PREFILTER_PX = 1.0
REGIONS = ("all", "static", "object")


# ----------------------------------------------------------------------------- regions

def ground_depth(c2w, intrinsics, height: int, width: int) -> np.ndarray:
  """z-depth at which each pixel's ray meets the ground plane z = 0 (inf if it does not).

  Args:
    c2w: f[T, 4, 4] camera-to-world (OpenCV axes, world z up).
    intrinsics: f[3, 3] pixel intrinsics (pixel centres at +0.5, as the renderer).
    height, width: frame size.

  Returns:
    f64[T, H, W].
  """
  c2w = np.asarray(c2w, np.float64)
  k = np.asarray(intrinsics, np.float64)
  if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
    raise ValueError(f"ground_depth: c2w has shape {c2w.shape}; expected [T, 4, 4]")
  if k.shape != (3, 3):
    raise ValueError(f"ground_depth: intrinsics have shape {k.shape}; expected [3, 3]")
  j, i = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
  d_cam = np.stack([(j - k[0, 2]) / k[0, 0], (i - k[1, 2]) / k[1, 1], np.ones_like(j)], -1)
  dz = np.einsum("hwc,tc->thw", d_cam, c2w[:, 2, :3])      # world z of each ray direction
  oz = c2w[:, 2, 3][:, None, None]
  with np.errstate(divide="ignore", invalid="ignore"):
    t = np.where((dz < 0) & (oz > 0), -oz / np.minimum(dz, -1e-12), np.inf)
  return t


def dilate(mask, radius: int = OBJECT_DILATE_PX) -> np.ndarray:
  """Per-frame binary dilation of bool[..., H, W] by a (2r+1) x (2r+1) square."""
  m = np.asarray(mask, bool)
  if radius <= 0:
    return m.copy()
  structure = np.ones((1,) * (m.ndim - 2) + (2 * radius + 1,) * 2, bool)
  return ndimage.binary_dilation(m, structure=structure)


def object_region(depth, c2w, intrinsics, radius: int = OBJECT_DILATE_PX) -> np.ndarray:
  """bool[T, H, W]: pixels whose truth sees an object (not sky, not ground), dilated.

  Args:
    depth: f[T, H, W] the truth's z-depth (inf = sky), as `synthetic.render` returns it.
    c2w: f[T, 4, 4] the truth's world poses.
    intrinsics: f[3, 3].
    radius: dilation in pixels.
  """
  depth = np.asarray(depth, np.float64)
  if depth.ndim != 3 or len(depth) != len(np.asarray(c2w)):
    raise ValueError(f"object_region: depth has shape {depth.shape}; expected [T, H, W] with "
                     f"T = {len(np.asarray(c2w))} poses")
  g = ground_depth(c2w, intrinsics, *depth.shape[1:])
  with np.errstate(invalid="ignore"):
    ground = np.isfinite(g) & (np.abs(depth - g) <= GROUND_RTOL * np.where(np.isfinite(g), g, 1))
  return dilate(np.isfinite(depth) & ~ground, radius)


# ----------------------------------------------------------------------------- sharpness

@dataclasses.dataclass(frozen=True)
class SharpnessResult:
  """Edge strength of a prediction and of its truth on the same pixels.

  Attributes:
    pred: mean gradient magnitude of the prediction (`edge_strength`, unit-range pixels).
    gt: the same for the truth.
    ratio: pred / gt (1.0 when both are 0; NaN when only gt is 0).
  """
  pred: float
  gt: float
  ratio: float


def gradient_magnitude(x: np.ndarray, prefilter_px: float = SHARPNESS_PREFILTER_PX
                       ) -> np.ndarray:
  """Per-pixel gradient magnitude of f64[..., H, W, C]: f64[..., H-1, W-1].

  Each frame and channel is first smoothed by a Gaussian of `prefilter_px` (edges
  repeated; 0 = none); then with forward differences gx = x[i, j+1] - x[i, j] and
  gy = x[i+1, j] - x[i, j], the magnitude sqrt(gx^2 + gy^2) at pixel (i, j), averaged
  over channels.
  """
  x = np.asarray(x, np.float64)
  if prefilter_px > 0:
    x = ndimage.gaussian_filter(x, (0.0,) * (x.ndim - 3) + (prefilter_px, prefilter_px, 0.0),
                                mode="nearest", truncate=4.0)
  gy = x[..., 1:, :-1, :] - x[..., :-1, :-1, :]
  gx = x[..., :-1, 1:, :] - x[..., :-1, :-1, :]
  return np.sqrt(gx ** 2 + gy ** 2).mean(axis=-1)


def edge_strength(video, mask=None, max_val: float = 1.0,
                  prefilter_px: float = SHARPNESS_PREFILTER_PX) -> float:
  """Mean `gradient_magnitude` of `[..., H, W, C]` over the pixels of `mask`.

  Args:
    video: `[..., H, W, C]` uint8 or float in [0, max_val]; H, W >= 2.
    mask: optional `[H, W]` or `[..., H, W]` (its last row and column are dropped: a
      forward difference needs the next pixel).

  Returns:
    the pooled mean over masked pixels and all frames.
  """
  v = metrics.to_unit_range(video, "video", max_val)
  if v.ndim < 3 or v.shape[-3] < 2 or v.shape[-2] < 2:
    raise ValueError(f"edge_strength: video of shape {v.shape}; expected [..., H, W, C], "
                     "H, W >= 2")
  g = gradient_magnitude(v, prefilter_px)
  if mask is None:
    return float(g.mean())
  m = metrics.prepare_mask(mask, v.shape[:-3], *v.shape[-3:-1])[..., :-1, :-1]
  if not m.any():
    raise ValueError("edge_strength: the mask selects no pixel with a right and lower "
                     "neighbour")
  return float(g[m].mean())


def sharpness_ratio(pred, gt, mask=None, max_val: float = 1.0) -> SharpnessResult:
  """Edge strength (`edge_strength`) of `pred` over that of `gt` on the same pixels.

  Args:
    pred, gt: `[..., H, W, C]` of one shape.
    mask: optional region (see `edge_strength`).
  """
  if np.shape(pred) != np.shape(gt):
    raise ValueError(f"sharpness_ratio: pred shape {np.shape(pred)} != gt shape {np.shape(gt)}")
  ep, eg = edge_strength(pred, mask, max_val), edge_strength(gt, mask, max_val)
  ratio = ep / eg if eg > 0 else (1.0 if ep == 0 else float("nan"))
  return SharpnessResult(pred=ep, gt=eg, ratio=ratio)


# ----------------------------------------------------------------------------- references

def gaussian_blur(video, sigma: float) -> np.ndarray:
  """Each frame of u8[..., H, W, C] blurred by a Gaussian of `sigma` px (per channel,
  edges repeated, kernel truncated at 4 sigma), rounded back to uint8."""
  v = metrics.to_unit_range(video, "video")
  s = (0.0,) * (v.ndim - 3) + (float(sigma), float(sigma), 0.0)
  out = ndimage.gaussian_filter(v, s, mode="nearest", truncate=4.0)
  return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def row_mean(video) -> np.ndarray:
  """Each row of each frame replaced by its mean colour: u8[..., H, W, C]."""
  v = metrics.to_unit_range(video, "video")
  out = np.broadcast_to(v.mean(axis=-2, keepdims=True), v.shape)
  return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- scores

def _mean_finite(x) -> float:
  x = np.asarray(x, np.float64)
  x = x[~np.isnan(x)]
  return float(x.mean()) if x.size else float("nan")


def region_scores(pred, gt, regions: dict) -> dict:
  """Per-frame PSNR and SSIM of a video on several regions in one pass, video means.

  Args:
    pred, gt: u8[T, H, W, 3] (or unit-range float), H, W >= 11.
    regions: {name: bool[T, H, W] or None (the whole frame)}.

  Returns:
    {f"psnr_{name}", f"ssim_{name}": mean over the frames whose region is non-empty (NaN
    if none), f"psnr_{name}_per_frame": f64[T] (NaN on empty frames)}. Equal to
    `metrics.psnr` / `metrics.ssim` with the same masks on the non-empty frames.
  """
  pred = metrics.check_pixels(pred, "pred")
  gt = metrics.check_pixels(gt, "gt")
  if pred.shape != gt.shape or pred.ndim != 4:
    raise ValueError(f"region_scores: pred {pred.shape} and gt {gt.shape} must be one "
                     "[T, H, W, C] shape")
  t, h, w, c = pred.shape
  r = metrics.SSIM_WINDOW // 2
  masks = {n: (None if m is None else metrics.prepare_mask(m, (t,), h, w, name=f"{n} region"))
           for n, m in regions.items()}
  ps = {n: np.full(t, np.nan) for n in masks}
  ss = {n: np.full(t, np.nan) for n in masks}
  for i in range(t):
    x = metrics.to_unit_range(pred[i], "pred")
    y = metrics.to_unit_range(gt[i], "gt")
    se = ((x - y) ** 2).sum(-1)
    smap = metrics.ssim_map(x, y).mean(-1)
    for n, m in masks.items():
      if m is None:
        ps[n][i] = metrics.psnr_from_mse(se.mean() / c)
        ss[n][i] = smap.mean()
        continue
      if m[i].any():
        ps[n][i] = metrics.psnr_from_mse(se[m[i]].sum() / (m[i].sum() * c))
      inner = m[i, r:h - r, r:w - r]
      if inner.any():
        ss[n][i] = smap[inner].mean()
  out = {}
  for n in masks:
    out[f"psnr_{n}"], out[f"ssim_{n}"] = _mean_finite(ps[n]), _mean_finite(ss[n])
    out[f"psnr_{n}_per_frame"] = ps[n]
  return out
