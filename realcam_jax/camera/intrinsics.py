"""Pinhole intrinsics `K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]` in pixels.

Pixel coordinates are continuous with the centre of pixel (row i, column j) at
`(u, v) = (j + 0.5, i + 0.5)`; the image spans `[0, width] x [0, height]`. With
this convention resizing scales fx, cx by `new_w / w` (fy, cy by `new_h / h`)
and cropping subtracts the crop origin from cx, cy.

"Normalised" intrinsics are K for an image of size 1x1 (fx/W, fy/H, cx/W,
cy/H), as RealEstate10K stores them; they are independent of resolution.
Array-API neutral (numpy or jax in, same out).
"""

from __future__ import annotations

import numpy as np

from realcam_jax.camera.pose import _asarray, xp_of


def intrinsics_from_focal(fx, fy, cx, cy):
  """`[...]` focal lengths and principal point (pixels) -> `[..., 3, 3]` K."""
  xp = xp_of(fx, fy, cx, cy)
  fx, fy, cx, cy = (_asarray(xp, a) for a in (fx, fy, cx, cy))
  fx, fy, cx, cy = xp.broadcast_arrays(fx, fy, cx, cy)
  zero, one = xp.zeros_like(fx), xp.ones_like(fx)
  return xp.stack([
      xp.stack([fx, zero, cx], axis=-1),
      xp.stack([zero, fy, cy], axis=-1),
      xp.stack([zero, zero, one], axis=-1)], axis=-2)


def intrinsics_from_fov(fov_deg, width, height, axis="horizontal"):
  """K for square pixels and a centred principal point.

  Args:
    fov_deg: [...] full field of view in degrees along `axis`, in (0, 180).
    width, height: image size in pixels.
    axis: "horizontal" (fov spans the width), "vertical" (the height) or
      "diagonal".

  Returns:
    [..., 3, 3] K in pixels.
  """
  xp = xp_of(fov_deg)
  fov = _asarray(xp, fov_deg)
  if xp is np and (np.any(fov <= 0) or np.any(fov >= 180)):
    raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
  extent = {"horizontal": width, "vertical": height,
            "diagonal": float(np.hypot(width, height))}.get(axis)
  if extent is None:
    raise ValueError(f"unknown fov axis {axis!r}: expected 'horizontal', 'vertical' or 'diagonal'")
  f = 0.5 * extent / xp.tan(xp.deg2rad(fov) / 2.0)
  return intrinsics_from_focal(f, f, xp.full_like(f, width / 2.0), xp.full_like(f, height / 2.0))


def fov_from_intrinsics(K, width, height):
  """`[..., 3, 3]` K -> `(horizontal, vertical)` full fields of view in degrees `[...]`."""
  xp = xp_of(K)
  K = _asarray(xp, K)
  fov_x = xp.rad2deg(2.0 * xp.arctan(0.5 * width / K[..., 0, 0]))
  fov_y = xp.rad2deg(2.0 * xp.arctan(0.5 * height / K[..., 1, 1]))
  return fov_x, fov_y


def scale_intrinsics(K, sx, sy=None):
  """Scales the image axes: x by `sx`, y by `sy` (default `sx`). `[..., 3, 3]`."""
  xp = xp_of(K)
  K = _asarray(xp, K)
  sy = sx if sy is None else sy
  s = xp.asarray([[sx, sx, sx], [sy, sy, sy], [1.0, 1.0, 1.0]], dtype=K.dtype)
  return K * s


def resize_intrinsics(K, old_size, new_size):
  """K after resizing the image from `old_size` to `new_size` (both `(width, height)`)."""
  (w0, h0), (w1, h1) = old_size, new_size
  return scale_intrinsics(K, w1 / w0, h1 / h0)


def crop_intrinsics(K, left, top):
  """K after cropping the image so that pixel `(left, top)` becomes the origin."""
  xp = xp_of(K)
  K = _asarray(xp, K)
  shift = xp.asarray([[0.0, 0.0, left], [0.0, 0.0, top], [0.0, 0.0, 0.0]], dtype=K.dtype)
  return K - shift


def normalize_intrinsics(K, width, height):
  """Pixel K -> normalised K (for a 1x1 image)."""
  return scale_intrinsics(K, 1.0 / width, 1.0 / height)


def denormalize_intrinsics(K, width, height):
  """Normalised K (for a 1x1 image) -> pixel K for a `width` x `height` image."""
  return scale_intrinsics(K, float(width), float(height))
