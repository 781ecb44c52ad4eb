"""Plücker ray maps: a 6-channel image `(d, o x d)` per camera.

For each pixel centre the ray leaves the camera centre `o` (world) with unit
direction `d = normalize(R K^-1 [u, v, 1])`; the moment `m = o x d` is the same
for every point on the line, so `(d, m)` describes the line independently of
where along it `o` sits. Channel order: `[dx, dy, dz, mx, my, mz]`.

`stride` samples one ray per `stride x stride` block (at the block's centre,
i.e. the mean of its pixel centres), which is what a patchified or
latent-resolution model wants; `patchify_rays` instead keeps every pixel and
folds each patch into channels. Array-API neutral (numpy or jax).
"""

from __future__ import annotations

import numpy as np

from realcam_jax.camera.pose import _asarray, xp_of


def pixel_centers(height, width, stride=1, xp=None):
  """`[H / stride, W / stride, 3]` homogeneous pixel coordinates `(u, v, 1)` of block centres."""
  xp = np if xp is None else xp
  if height % stride or width % stride:
    raise ValueError(f"image size {height}x{width} is not divisible by the ray stride {stride}")
  u = xp.arange(width // stride) * stride + stride / 2.0
  v = xp.arange(height // stride) * stride + stride / 2.0
  uu, vv = xp.meshgrid(u, v, indexing="xy")
  return xp.stack([uu, vv, xp.ones_like(uu)], axis=-1)


def plucker_rays(c2w, K, height, width, stride=1):
  """Plücker ray map of cameras.

  Args:
    c2w: [..., 4, 4] camera-to-world poses (OpenCV axes).
    K: [..., 3, 3] pixel intrinsics for a `width` x `height` image (broadcast
      against the batch of `c2w`).
    height, width: image size in pixels.
    stride: one ray per `stride x stride` block (must divide both sizes).

  Returns:
    [..., height // stride, width // stride, 6] rays `(d, o x d)`, d unit length.
  """
  xp = xp_of(c2w, K)
  c2w, K = _asarray(xp, c2w), _asarray(xp, K)
  pix = pixel_centers(height, width, stride, xp).astype(c2w.dtype)
  k_inv = xp.linalg.inv(K)
  d_cam = xp.einsum("...ij,hwj->...hwi", k_inv, pix)
  rot = c2w[..., None, None, :3, :3]
  d = xp.einsum("...ij,...j->...i", rot, d_cam)
  d = d / xp.linalg.norm(d, axis=-1, keepdims=True)
  o = xp.broadcast_to(c2w[..., None, None, :3, 3], d.shape)
  m = xp.cross(o, d)
  return xp.concatenate([d, m], axis=-1)


def patchify_rays(rays, patch):
  """Folds `patch x patch` pixel blocks into channels.

  Args:
    rays: [..., H, W, C] (e.g. C=6 Plücker channels).
    patch: block size dividing H and W.

  Returns:
    [..., H / patch, W / patch, patch * patch * C], channels ordered
    (row in patch, column in patch, C) like einops
    `'... (h p) (w q) c -> ... h w (p q c)'`.
  """
  *batch, h, w, c = rays.shape
  if h % patch or w % patch:
    raise ValueError(f"ray map {h}x{w} is not divisible by the patch size {patch}")
  x = rays.reshape(tuple(batch) + (h // patch, patch, w // patch, patch, c))
  n = len(batch)
  x = x.transpose(tuple(range(n)) + (n, n + 2, n + 1, n + 3, n + 4))
  return x.reshape(tuple(batch) + (h // patch, w // patch, patch * patch * c))
