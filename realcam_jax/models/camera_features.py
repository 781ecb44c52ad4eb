"""Camera features the network consumes, from relative target poses.

`camera_features(cfg, poses, K, latent_hw, spatial_factor)`:
  pose12   [B, F, 12]: flattened 3x4 [R|t] of each target latent frame's pose
           relative to the reference (design.md §3, `camera.reference`).
  plucker  [B, F, P, 6 * ph * pw]: Plücker rays at latent resolution (one ray per
           latent pixel, intrinsics scaled by 1 / spatial_factor), patchified like
           the latents.
  none     None.
"""

from __future__ import annotations

import jax.numpy as jnp

from realcam_jax.camera import intrinsics as intr
from realcam_jax.camera import plucker as pl
from realcam_jax.camera import pose as cpose


def camera_features(cfg, poses, K, latent_hw: tuple[int, int], spatial_factor: int):
  """poses f32[B, F, 4, 4] (relative c2w), K f32[B, 3, 3] (pixel intrinsics) -> features."""
  enc = cfg.camera_encoding
  if enc == "none":
    return None
  poses = jnp.asarray(poses, jnp.float32)
  if poses.ndim != 4 or poses.shape[-2:] != (4, 4):
    raise ValueError(f"target poses must be [B, F, 4, 4], got {poses.shape}")
  if enc == "pose12":
    return cpose.pose_to_12(poses)
  if enc == "plucker":
    h, w = latent_hw
    k_lat = intr.scale_intrinsics(jnp.asarray(K, jnp.float32), 1.0 / spatial_factor)
    rays = pl.plucker_rays(poses, k_lat[:, None], h, w)                 # [B, F, h, w, 6]
    _, ph, pw = cfg.patch_size
    b, f = poses.shape[:2]
    rays = rays.reshape(b, f, h // ph, ph, w // pw, pw, 6).transpose(0, 1, 2, 4, 3, 5, 6)
    return rays.reshape(b, f, (h // ph) * (w // pw), ph * pw * 6)
  raise ValueError(f"unknown camera_encoding {enc!r}; expected pose12, plucker or none")
