"""The anchor of `model.prediction = "warped_source"`: source latents seen from the target.

Each source latent frame is warped to its target camera through the plane `z =
model.warp_depth` of the source camera (`camera/warp.py`, at latent resolution: pixel
intrinsics scaled by 1 / spatial_factor). The network predicts a residual on it, so a
fresh model (zero-initialised head) already re-renders a camera rotation exactly and
a translation as if the scene were that plane; at the identity camera the anchor is the
source itself (what `source_residual` anchors on everywhere).

Poses follow `camera_features`: target c2w relative to the source's first frame and the
source camera's own poses in the same frame; with `source_poses=None` the poses are
already offsets from the moving source camera (a real video whose camera is unknown).

`model.warp_space` says where the warp happens:
  latent  (default) the source *latents* are warped, at latent resolution (`warped_source`);
  pixel   the source *pixel frames* are warped (each pixel frame at its own pose, interpolated
          between latent frames: latent frame j sits at pixel frame 4j) and encoded by the
          VAE (`pixel_warped_source`). Through the 4x demo VAE this anchor scores 1.05 dB
          above the latent warp on the presets (docs/pilots.md). Training reads it from
          the latent dataset (`realcam data encode --anchor-depth`, feature
          `anchor_latent`, windowed like the target); `realcam eval`'s teacher and
          `render_offline` compute it from the source video. The chunk-by-chunk stream
          does not support it yet (its encoder would need a second causal cache).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from realcam_jax.camera import interp
from realcam_jax.camera import intrinsics as intr
from realcam_jax.camera import pose as cpose
from realcam_jax.camera import warp

DEFAULT_WARP_DEPTH = 8.0     # the demo rig's subject distance (data/rig.py: 6-9.5 m)
WARP_SPACES = ("latent", "pixel")


def warp_space(cfg) -> str:
  """`cfg.warp_space` ("latent" when absent: configs written before the option), checked."""
  space = str(cfg.get("warp_space", "latent"))
  if space not in WARP_SPACES:
    raise ValueError(f"model.warp_space={space!r}: expected one of {', '.join(WARP_SPACES)}")
  return space


def pixel_anchor_needed(cfg) -> bool:
  """True when the model's anchor is made from warped *pixels* (the caller must provide
  them: `pixel_warped_source`)."""
  return cfg.get("prediction") == "warped_source" and warp_space(cfg) == "pixel"


def pixel_rel_poses(poses, num_frames: int, source_poses=None, temporal_factor: int = 4):
  """Target -> source camera transform of every pixel frame, f32[B, T, 4, 4].

  poses / source_poses: f32[B, F, 4, 4] per latent frame as in `warped_source`; each is
  interpolated to the T pixel frames first (latent frame j at pixel frame
  `temporal_factor * j`; slerp / linear between, `camera/interp.py`), so the relative
  pose of pixel frame t is that of the two cameras at t."""
  poses = jnp.asarray(poses, jnp.float32)
  keys = jnp.arange(poses.shape[1], dtype=jnp.float32) * temporal_factor
  query = jnp.arange(num_frames, dtype=jnp.float32)
  expand = jax.vmap(lambda p: interp.interpolate_poses(p, keys, query))
  target = expand(poses)
  if source_poses is None:
    return target
  return cpose.invert_pose(expand(jnp.asarray(source_poses, jnp.float32))) @ target


def warp_pixels_u8(frames, rel, K, depth: float):
  """Source pixel frames seen through the plane `z = depth`, quantised to 8-bit levels.

  frames: [T, H, W, 3] in u8 levels (u8 or float); rel: f32[T, 4, 4]; K: f32[3, 3] pixel
  intrinsics. Returns f32[T, H, W, 3] holding integers 0..255 (what `realcam data
  encode --anchor-depth` stores before encoding, so training and inference anchors agree).
  """
  out, _ = warp.plane_warp(jnp.asarray(frames, jnp.float32), rel, K, depth)
  return jnp.clip(jnp.round(out), 0.0, 255.0)


def pixel_warped_source(cfg, encode, source_u8, poses, K, source_poses=None,
                        temporal_factor: int = 4):
  """The `warp_space = "pixel"` anchor: the source video warped to the target cameras
  frame by frame, then encoded.

  Args:
    cfg: model config (`warp_depth`).
    encode: f32[B, T, H, W, 3] in [-1, 1] -> latents f32[B, F, h, w, C] (`WanVAE.encode`).
    source_u8: [B, T, H, W, 3] source video, 8-bit levels.
    poses, source_poses: per latent frame, as in `warped_source`.
    K: f32[B, 3, 3] pixel intrinsics.

  Returns:
    f32[B, F, h, w, C].
  """
  b, t = source_u8.shape[:2]
  poses = jnp.asarray(poses, jnp.float32)
  if poses.ndim != 4 or poses.shape[0] != b or poses.shape[2:] != (4, 4):
    raise ValueError(f"target poses {poses.shape} must be [B={b}, F, 4, 4] to warp a source "
                     f"video {source_u8.shape}")
  rel = pixel_rel_poses(poses, t, source_poses, temporal_factor)
  depth = float(cfg.get("warp_depth", DEFAULT_WARP_DEPTH))
  warped = jax.vmap(lambda s, r, k: warp_pixels_u8(s, r, k, depth))(
      source_u8, rel, jnp.asarray(K, jnp.float32))
  return encode(warped / 127.5 - 1.0).astype(jnp.float32)


def warped_source(cfg, source, poses, K, spatial_factor: int, source_poses=None):
  """Source latents warped to the target cameras.

  Args:
    cfg: model config (`warp_depth`).
    source: f32[B, F, h, w, C] source latents.
    poses: f32[B, F, 4, 4] target poses per latent frame (see the module docstring).
    K: f32[B, 3, 3] pixel intrinsics.
    spatial_factor: the VAE's spatial factor (latent pixel = that many pixels).
    source_poses: f32[B, F, 4, 4] or None.

  Returns:
    f32[B, F, h, w, C] in source's dtype.
  """
  poses = jnp.asarray(poses, jnp.float32)
  b, f, h, w = source.shape[:4]
  if poses.shape != (b, f, 4, 4):
    raise ValueError(f"target poses {poses.shape} must be [B={b}, F={f}, 4, 4] to warp "
                     f"source latents {source.shape}")
  rel = poses if source_poses is None else cpose.relative_poses(
      poses, "pair", jnp.asarray(source_poses, jnp.float32))
  k_lat = intr.scale_intrinsics(jnp.asarray(K, jnp.float32), 1.0 / spatial_factor)
  depth = float(cfg.get("warp_depth", DEFAULT_WARP_DEPTH))
  out = jax.vmap(lambda s, r, k: warp.plane_warp(s, r, k, depth)[0])(
      source.astype(jnp.float32), rel, k_lat)
  return out.astype(source.dtype)


def anchor_for(cfg, source, poses, K, spatial_factor: int, source_poses=None):
  """The model's anchor: `warped_source(...)` for `prediction = "warped_source"`, else None
  (the other predictions take no anchor). A `warp_space = "pixel"` model needs the source
  pixels: its callers use `pixel_warped_source`; here it is an error."""
  if cfg.get("prediction") != "warped_source":
    return None
  if warp_space(cfg) == "pixel":
    raise ValueError("model.warp_space='pixel' builds its anchor from the source pixels "
                     "(warp_anchor.pixel_warped_source); this path has only latents. The "
                     "chunk-by-chunk stream does not support pixel anchors yet: use "
                     "render_offline / `realcam eval`, or model.warp_space='latent'")
  return warped_source(cfg, source, poses, K, spatial_factor, source_poses)


def anchor_from_video(cfg, vae, source_u8, source_latents, poses, K, source_poses=None):
  """The model's anchor where the whole source video is at hand (`realcam eval`'s teacher,
  `render_offline`): `pixel_warped_source` for `warp_space = "pixel"`, else `anchor_for`
  on the source latents (None for models without an anchor).

  vae: a `WanVAE` (its `encode`, spatial and temporal factors)."""
  if pixel_anchor_needed(cfg):
    return pixel_warped_source(cfg, vae.encode, source_u8, poses, K, source_poses,
                               vae.temporal_factor)
  return anchor_for(cfg, source_latents, poses, K, vae.spatial_factor, source_poses)


def batch_anchor(cfg, batch: dict, spatial_factor: int):
  """The model's anchor for a training batch: `batch_warped_source` for
  `prediction = "warped_source"`, else None."""
  if cfg.get("prediction") != "warped_source":
    return None
  return batch_warped_source(cfg, batch, spatial_factor)


def batch_warped_source(cfg, batch: dict, spatial_factor: int):
  """`warped_source` of a training batch (source_latents, target_poses, intrinsics,
  source_poses: required, as for the pair camera reference). With `warp_space = "pixel"`
  the batch carries the anchor itself (`anchor_latents`, from a latent dataset encoded with
  `--anchor-depth`)."""
  if warp_space(cfg) == "pixel":
    if batch.get("anchor_latents") is None:
      raise ValueError("model.warp_space='pixel' reads the batch's anchor_latents; this data "
                       f"source gives only {sorted(batch)} (encode the latent dataset with "
                       "`realcam data encode --anchor-depth DEPTH`)")
    return batch["anchor_latents"]
  if batch.get("source_poses") is None:
    raise ValueError("model.prediction='warped_source' needs the batch's source_poses; this "
                     f"data source gives only {sorted(batch)} (use latent records, "
                     "data.source='latents')")
  return warped_source(cfg, batch["source_latents"], batch["target_poses"], batch["intrinsics"],
                       spatial_factor, batch["source_poses"])
