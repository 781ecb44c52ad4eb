"""`RealCamDiT`: the network shared by teacher, student and critic (design.md §3).

A Wan2.1 backbone (`WanDiT`) that sees source and target latent frames as pairs:
  - layout (`config.layout`): interleaved `[s1, t1, s2, t2, ...]` or prefix `[s1.., t1..]`;
  - RoPE temporal index per frame from `config.pair_rope` (shared | sequential);
  - a learned source/target stream embedding (zero-initialised) added to the tokens;
  - camera conditioning on target frames only, through the backbone's per-block
    zero-initialised `cond_proj` (`config.camera_encoding`):
      pose12   the flattened 3x4 relative pose, one vector per frame [B, F, 12];
      plucker  per-token Plücker rays, patchified [B, F, P, 6 * ph * pw];
  - optional zero-initialised pair-aligned source skip (`config.source_skip`): a
    Linear from each source token to the paired target token (design.md §8);
  - source frames always at timestep 0; text optional (a zero "null" embedding);
  - what the head predicts (`config.prediction`): "velocity" (Wan: the network output is
    the velocity) or "source_residual" (demo option: the output is a residual on the
    paired source latent, x0_hat = source + out, returned as the velocity
    `(x_t - x0_hat) / max(sigma, RESIDUAL_SIGMA_FLOOR)`; Wan's output projection is
    zero-initialised, so at initialisation the model copies its source and training
    learns the change of view from there; see `anchor_on_source`), or "warped_source"
    (the same residual on an `anchor` the caller passes: the source latents warped to the
    target camera through a plane, `models/warp_anchor.py`; at initialisation the model
    re-renders a camera rotation exactly, and the source skip carries the anchor's tokens
    instead of the source's). No extra parameter: the tree stays Wan's.
    With `config.anchor_std` > 0 either residual is preconditioned around its anchor
    (`preconditioned_velocity`): x0_hat = a + c_skip (x_t - (1 - sigma) a) + c_out out, the
    linear least-squares estimate of x0 from x_t and an anchor a whose error has standard
    deviation `anchor_std`, plus the head's unit-scale correction. At low noise the noisy
    target passes through analytically (c_skip -> 1), so the head never has to learn to
    copy x_t - a; at sigma = 1 it is the plain residual scaled by anchor_std.

At initialisation every RealCam addition is exactly zero, so the network computes
the plain Wan2.1 function: pretrained weights load into `backbone` unchanged.
"""

from __future__ import annotations

import ml_collections
import numpy as np
import jax
import jax.numpy as jnp
from flax import nnx

from realcam_jax.models import layers, layout
from realcam_jax.models.attention import AttentionMask
from realcam_jax.models.blocks import KV, kv_segments
from realcam_jax.models.dit import WanDiT

CAMERA_ENCODINGS = ("pose12", "plucker", "none")
# Which tokens a call runs through the blocks (`RealCamDiT.__call__(streams=...)`).
STREAMS = ("both", "source", "target")
PREDICTIONS = ("velocity", "source_residual", "warped_source")
# Below this noise level a source-residual velocity divides by the floor instead of sigma
# (the x0 error would otherwise be weighted by 1/sigma^2 in the flow-matching loss).
RESIDUAL_SIGMA_FLOOR = 0.05


def camera_cond_dim(cfg) -> int:
  """Width of the per-block camera input for `cfg.camera_encoding`."""
  enc = cfg.camera_encoding
  if enc not in CAMERA_ENCODINGS:
    raise ValueError(f"unknown camera_encoding {enc!r}; expected one of {CAMERA_ENCODINGS}")
  _, ph, pw = cfg.patch_size
  return {"pose12": 12, "plucker": 6 * ph * pw, "none": 0}[enc]


def backbone_config(cfg) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg))
  c.block_cond_dim = camera_cond_dim(cfg)
  return c


def anchor_on_source(out, source, target, sigma, layout_name: str, anchor_std: float = 0.0):
  """The "source_residual" / "warped_source" prediction: head output -> velocity of the
  combined sequence (`source` is the anchor: the source latents or their warp).

  Args:
    out: head output [B, 2F, h, w, C] (combined layout).
    source, target: clean source / noisy target latents [B, F, h, w, C].
    sigma: f32[B, F] target noise levels.
    layout_name: the sequence layout.

  Returns:
    [B, 2F, h, w, C]: source entries unchanged, target entries the velocity
    `(target - x0_hat) / max(sigma, RESIDUAL_SIGMA_FLOOR)` of `x0_hat = source + out`.
  """
  out_src, out_tgt = layout.split(out, layout_name)
  return layout.combine(out_src, residual_velocity(out_tgt, source, target, sigma, anchor_std),
                        layout_name)


def residual_velocity(out_tgt, source, target, sigma, anchor_std: float = 0.0):
  """The target half of `anchor_on_source`: head output of the target frames
  [B, F, h, w, C] -> their velocity `(target - (source + out)) / max(sigma, floor)`, or
  with `anchor_std` > 0 `preconditioned_velocity`."""
  if anchor_std > 0:
    return preconditioned_velocity(out_tgt, source, target, sigma, anchor_std)
  x0 = source.astype(jnp.float32) + out_tgt.astype(jnp.float32)
  denom = jnp.maximum(jnp.asarray(sigma, jnp.float32), RESIDUAL_SIGMA_FLOOR)[..., None, None, None]
  v = (target.astype(jnp.float32) - x0) / denom
  return v.astype(out_tgt.dtype)


def precondition(sigma, anchor_std: float):
  """Coefficients of the anchor-centred estimate x0_hat = a + c_skip y + c_out out, with
  y = x_t - (1 - sigma) a = (1 - sigma)(x0 - a) + sigma noise: for an anchor error of
  variance s^2, c_skip = (1 - sigma) s^2 / d is the least-squares gain on y and
  c_out = s sigma / sqrt(d) the standard deviation left, d = (1 - sigma)^2 s^2 + sigma^2.
  Returns (c_skip, c_out) shaped like sigma."""
  sigma = jnp.asarray(sigma, jnp.float32)
  s2 = float(anchor_std) ** 2
  d = jnp.square(1.0 - sigma) * s2 + jnp.square(sigma)
  return (1.0 - sigma) * s2 / d, anchor_std * sigma / jnp.sqrt(d)


def preconditioned_velocity(out_tgt, anchor, target, sigma, anchor_std: float):
  """Velocity `(x_t - x0_hat) / sigma` of the anchor-centred estimate (`precondition`),
  in closed form without the division: v = (sigma - (1 - sigma) s^2) / d * y - a
  - s / sqrt(d) * out, exact at every sigma in [0, 1] (no floor needed)."""
  sig = jnp.asarray(sigma, jnp.float32)[..., None, None, None]
  a = anchor.astype(jnp.float32)
  y = target.astype(jnp.float32) - (1.0 - sig) * a
  s2 = float(anchor_std) ** 2
  d = jnp.square(1.0 - sig) * s2 + jnp.square(sig)
  v = (sig - (1.0 - sig) * s2) / d * y - a - anchor_std / jnp.sqrt(d) * out_tgt.astype(jnp.float32)
  return v.astype(out_tgt.dtype)


class RealCamDiT(nnx.Module):
  """Camera-controlled pair DiT. Build with `RealCamDiT(config.model, rngs=nnx.Rngs(seed))`."""

  def __init__(self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    layout._check(cfg.layout, cfg.pair_rope)
    self.cfg = ml_collections.FrozenConfigDict(backbone_config(cfg))
    self.backbone = WanDiT(self.cfg, rngs=rngs)
    param_dtype = layers.to_dtype(cfg.param_dtype)
    self.stream_embed = layers.make_param(layers.zeros, rngs, (2, cfg.dim), param_dtype,
                                          (None, "embed"))
    self.source_skip = (layers.Linear(cfg.dim, cfg.dim, axes=("embed", "embed"),
                                      kernel_init=layers.zeros, dtype=layers.to_dtype(cfg.dtype),
                                      param_dtype=param_dtype, rngs=rngs)
                        if cfg.source_skip else None)
    self.prediction = cfg.get("prediction", "velocity")
    self.anchor_std = float(cfg.get("anchor_std", 0.0))
    if self.anchor_std < 0:
      raise ValueError(f"model.anchor_std must be >= 0 (0: plain residual), got {self.anchor_std}")
    if self.prediction not in PREDICTIONS:
      raise ValueError(f"unknown model.prediction {self.prediction!r}; expected one of "
                       f"{PREDICTIONS}")

  def null_text(self, batch: int) -> jax.Array:
    """The text input used when no text is given: zeros [B, text_len, text_dim]."""
    return jnp.zeros((batch, self.cfg.text_len, self.cfg.text_dim), layers.to_dtype(self.cfg.dtype))

  def __call__(self, source: jax.Array, target: jax.Array, sigma: jax.Array,
               camera: jax.Array | None, text: jax.Array | None = None, *,
               cond_mask: jax.Array | None = None, first_pair: int | jax.Array = 0,
               pair_pos: jax.Array | np.ndarray | None = None,
               mask: AttentionMask | None = None, extra_kv: KV | None = None,
               extra_shift: jax.Array | None = None, return_kv: bool = False,
               uncond_text: jax.Array | None = None, streams: str = "both",
               anchor: jax.Array | None = None):
    """Predicts the velocity for every frame of the combined pair sequence.

    Args:
      source: clean source latents [B, F, h, w, C].
      target: noisy target latents [B, F, h, w, C] at noise level `sigma` (None with
        streams 'source').
      sigma: target noise level per frame f32[B, F] in [0, 1] (timestep = 1000 sigma;
        None with streams 'source').
      camera: target camera features: [B, F, 12] (pose12) or [B, F, P, 6 ph pw]
        (plucker); None with camera_encoding 'none' or for an unconditional call.
      text: text embeddings [B, Lt, Dt] or None (null embedding).
      cond_mask: f32[B], 1 = conditioned, 0 = unconditional (camera and text
        dropped, as for classifier-free guidance). Default all 1.
      uncond_text: the text an unconditional row sees instead of `text` ([B or 1, Lt, Dt]:
        Wan's encoding of the empty prompt); None = zeros.
      first_pair: int or i32[]: pair index of the first pair (RoPE positions of pairs
        first_pair + 0..F-1, mapped to frames by `layout.frame_positions`).
      pair_pos: int[F] explicit pair index of every pair instead (e.g. a sequence holding
        copies of chunks at other positions); overrides first_pair.
      mask, extra_kv, return_kv: passed to the backbone (chunk-causal student); extra_kv
        is one KV [L, B, S, N, H] or a tuple of such segments (`blocks.kv_segments`).
      extra_shift: i32[S] or None: temporal RoPE positions (frame units) by which each
        extra key (all segments, in order) is moved before attention
        (`kv_cache.position_shift`).
      streams: which tokens run through the blocks and the head (`STREAMS`): 'both' (the
        combined sequence), 'source' or 'target' (only that stream's F frames, at the
        positions they have in the combined sequence; keys of the other stream, where
        wanted, come in through extra_kv). 'target' still embeds the sources (source
        skip, source-residual anchoring); 'source' needs no target, sigma or camera.
        Used by the student's `source_once` chunks (`causal.source_pass`).
      anchor: [B, F, h, w, C] the latents "warped_source" predicts a residual on
        (`warp_anchor.warped_source`); required with that prediction (except streams
        'source'), ignored otherwise.

    Returns:
      velocity [B, 2F, h, w, C] for the combined sequence (use `layout.split` to get
      the target half), or [B, F, h, w, C] for the one stream of streams 'source' /
      'target'; with return_kv also the KV of the tokens run [L, B, T, N, H].
    """
    cfg = self.cfg
    bb = self.backbone
    if streams not in STREAMS:
      raise ValueError(f"unknown streams {streams!r}; expected one of {STREAMS}")
    if streams == "source":          # sources alone: their timestep is 0, no camera
      target = jnp.zeros_like(source) if target is None else target
      sigma = jnp.zeros(source.shape[:2], jnp.float32) if sigma is None else sigma
      camera = None
    if target is None or source.shape != target.shape:
      raise ValueError(f"source latents {source.shape} and target latents "
                       f"{None if target is None else target.shape} must have the same shape "
                       "[B, F, h, w, C]")
    b, f = source.shape[:2]
    if self.prediction != "warped_source" or streams == "source":
      anchor = None
    elif anchor is None or anchor.shape != source.shape:
      raise ValueError("model.prediction='warped_source' needs anchor= latents shaped like the "
                       f"source {source.shape} (models/warp_anchor.py), got "
                       f"{None if anchor is None else anchor.shape}")
    if tuple(jnp.shape(sigma)) != (b, f):
      raise ValueError(f"sigma must be [B={b}, F={f}] (one noise level per target frame), "
                       f"got {jnp.shape(sigma)}")
    is_tgt = layout.is_target(f, cfg.layout)                               # bool[2F]
    x = layout.combine(source, target, cfg.layout)
    tokens = bb.embed_tokens(x)                                            # [B, 2F, P, D]
    p = tokens.shape[2]
    stream = self.stream_embed[...][jnp.asarray(is_tgt, jnp.int32)]         # [2F, D]
    tokens = (tokens + stream[None, :, None].astype(tokens.dtype))
    if self.source_skip is not None:
      src_tok, tgt_tok = layout.split(tokens, cfg.layout)
      skip = src_tok
      if anchor is not None:   # the anchor's tokens as a source token would be (stream 0)
        skip = (bb.embed_tokens(anchor.astype(source.dtype))
                + self.stream_embed[...][0][None, None, None].astype(tokens.dtype))
      tokens = layout.combine(src_tok, tgt_tok + self.source_skip(skip), cfg.layout)

    t = layout.combine(jnp.zeros((b, f), jnp.float32), jnp.asarray(sigma, jnp.float32) * 1000.0,
                       cfg.layout)
    # One stream: only its frames (static indices into the combined sequence) go on.
    frames = None if streams == "both" else np.flatnonzero(is_tgt == (streams == "target"))
    if frames is not None:
      tokens, t = tokens[:, frames], t[:, frames]
    cond = jnp.ones((b,), jnp.float32) if cond_mask is None else jnp.asarray(cond_mask, jnp.float32)
    if text is None:
      text = self.null_text(b)
    else:
      keep = cond[:, None, None].astype(text.dtype)
      text = text * keep
      if uncond_text is not None:
        text = text + jnp.broadcast_to(uncond_text, text.shape).astype(text.dtype) * (1 - keep)
    temb, e, ctx = bb.embed_conditions(t, text)

    _, ph, pw = bb.patch_size
    grid_h, grid_w = x.shape[2] // ph, x.shape[3] // pw
    if pair_pos is None:
      frame_pos = layout.frame_positions(f, cfg.layout, cfg.pair_rope, first_pair)
    else:
      if tuple(np.shape(pair_pos)) != (f,):
        raise ValueError(f"pair_pos must be int[F={f}] (one index per pair), got shape "
                         f"{np.shape(pair_pos)}")
      frame_pos = layout.pair_frame_positions(pair_pos, cfg.layout, cfg.pair_rope)
    if frames is not None:
      frame_pos = frame_pos[frames]
    cos, sin = bb.rope(frame_pos, grid_h, grid_w)
    extra_cos = extra_sin = None
    if extra_shift is not None:
      slots = sum(segment.k.shape[2] for segment in kv_segments(extra_kv))
      if extra_kv is None or tuple(jnp.shape(extra_shift)) != (slots,):
        raise ValueError(f"extra_shift must be int[S] for extra_kv with S slots, got shape "
                         f"{jnp.shape(extra_shift)}")
      extra_cos, extra_sin = bb.rope(extra_shift, 1, 1)       # temporal channels only

    block_cond = block_cond_mask = None
    if cfg.block_cond_dim and camera is not None:
      block_cond = self._camera_tokens(camera, b, f, p)
      block_cond_mask = jnp.asarray(is_tgt, jnp.float32)[None] * cond[:, None]
    if frames is not None and block_cond is not None:
      block_cond, block_cond_mask = block_cond[:, frames], block_cond_mask[:, frames]
    from realcam_jax.models.blocks import BlockInputs
    bb._check_cache(extra_kv, b)
    inputs = BlockInputs(e, ctx, cos, sin, AttentionMask() if mask is None else mask,
                         block_cond, block_cond_mask, extra_cos, extra_sin)
    tokens, kvs = bb.run_blocks(tokens, inputs, extra_kv, return_kv)
    out = bb.head(tokens, temb, grid_h, grid_w)
    if self.prediction in ("source_residual", "warped_source"):
      base = source if anchor is None else anchor
      if streams == "both":
        out = anchor_on_source(out, base, target, sigma, cfg.layout, self.anchor_std)
      elif streams == "target":
        out = residual_velocity(out, base, target, sigma, self.anchor_std)
    return (out, kvs) if return_kv else out

  def _camera_tokens(self, camera, b, f, p):
    """Camera features for target frames placed in the combined sequence (zeros for sources)."""
    dim = self.cfg.block_cond_dim
    if self.cfg.camera_encoding == "pose12":
      if camera.shape != (b, f, 12):
        raise ValueError(f"camera must be [B={b}, F={f}, 12] (flattened 3x4 relative pose per "
                         f"target latent frame) for camera_encoding 'pose12', got {camera.shape}")
      camera = camera[:, :, None]
    elif camera.shape != (b, f, p, dim):
      raise ValueError(f"camera must be [B={b}, F={f}, P={p}, {dim}] (patchified Plücker rays) "
                       f"for camera_encoding 'plucker', got {camera.shape}")
    camera = camera.astype(jnp.float32)
    return layout.combine(jnp.zeros_like(camera), camera, self.cfg.layout)
