"""`WanDiT`: the Wan2.1 video DiT backbone, numerically identical to diffusers
`WanTransformer3DModel` (T2V), with per-frame timesteps, explicit RoPE frame
positions, a per-block conditioning hook and KV-cache hooks.

Shapes: B batch, F (token) frames, h/w latent height/width, C channels,
P tokens per frame, T = F * P tokens, D model dim, N heads, H head dim,
S extra (cached) key slots, L layers, Lt text tokens, Dt text dim.

Parameter tree (diffusers names; `blocks` stacked on a leading 'layers' axis):
  patch_embedding/{kernel [pt, ph, pw, C, D], bias}
  condition_embedder/{time_embedder/{linear_1, linear_2}, time_proj, text_embedder/{...}}
  blocks/...           see `realcam_jax.models.blocks` (each leaf [L, ...])
  proj_out/{kernel [D, pt*ph*pw*C_out], bias}
  scale_shift_table [1, 2, D]

Stages are public so wrappers (RealCam teacher / causal student) can add to the
tokens between them: `embed_tokens` -> `embed_conditions` -> `run_blocks` ->
`head`; `__call__` composes them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from realcam_jax import sharding
from realcam_jax.models import layers
from realcam_jax.models.attention import AttentionMask
from realcam_jax.models.blocks import KV, BlockInputs, WanBlock, kv_segments
from realcam_jax.models.embeddings import ConditionEmbedder, PatchEmbed
from realcam_jax.models.rope import rope_cos_sin, rope_split


def _constrain_tokens(x: jax.Array) -> jax.Array:
  """Sharding constraint ('batch', 'length', 'act_embed') on tokens [B, F, P, D]."""
  b, f, p, d = x.shape
  return sharding.constrain(x.reshape(b, f * p, d), ("batch", "length", "act_embed")
                            ).reshape(b, f, p, d)


class WanDiT(nnx.Module):
  """Wan2.1 DiT. Build with `WanDiT(config.model, rngs=nnx.Rngs(seed))`."""

  def __init__(self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    if cfg.dim % cfg.num_heads:
      raise ValueError(f"model.dim={cfg.dim} is not divisible by model.num_heads={cfg.num_heads}")
    rope_split(cfg.dim // cfg.num_heads)  # validates the head dim early
    self.cfg = ml_collections.FrozenConfigDict(cfg)
    self.dtype = layers.to_dtype(cfg.dtype)
    param_dtype = layers.to_dtype(cfg.param_dtype)
    layers.remat(lambda: None, cfg.remat_policy)  # validates the policy name early
    self.patch_size = tuple(int(p) for p in cfg.patch_size)
    self.head_dim = cfg.dim // cfg.num_heads
    self.patch_embedding = PatchEmbed(cfg.in_channels, cfg.dim, self.patch_size,
                                      dtype=self.dtype, param_dtype=param_dtype, rngs=rngs)
    self.condition_embedder = ConditionEmbedder(cfg.dim, cfg.freq_dim, cfg.text_dim,
                                                dtype=self.dtype, param_dtype=param_dtype,
                                                rngs=rngs)

    @nnx.split_rngs(splits=cfg.num_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make_blocks(rngs):
      return WanBlock(cfg, rngs=rngs)

    self.blocks = make_blocks(rngs)
    out_dim = cfg.out_channels * int(np.prod(self.patch_size))
    self.proj_out = layers.Linear(cfg.dim, out_dim, axes=("embed", None),
                                  kernel_init=layers.zeros, dtype=self.dtype,
                                  param_dtype=param_dtype, rngs=rngs)
    self.scale_shift_table = layers.make_param(jax.nn.initializers.normal(cfg.dim ** -0.5), rngs,
                                               (1, 2, cfg.dim), param_dtype,
                                               (None, "modulation", "embed"))

  # ------------------------------------------------------------------------ stages

  def embed_tokens(self, x: jax.Array) -> jax.Array:
    """Latents x[B, F, h, w, C] -> tokens [B, F', P, D] (F' = F // pt)."""
    self._check_latents(x)
    return _constrain_tokens(self.patch_embedding(x))

  def embed_conditions(self, t: jax.Array, context: jax.Array
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """t[B, F] (or [B]), context[B, Lt, Dt] -> (temb, e, ctx).

    temb: f32[B, F, D]; e: f32[B, F, 6, D] modulation; ctx: [B, Lt, D] projected text.
    """
    if context.ndim != 3 or context.shape[-1] != self.cfg.text_dim:
      raise ValueError(f"context must be [B, Lt, text_dim={self.cfg.text_dim}], "
                       f"got shape {context.shape}")
    temb, e = self.condition_embedder.time(t)
    return temb, e, self.condition_embedder.text(context)

  def rope(self, frame_pos, grid_h: int, grid_w: int) -> tuple[jax.Array, jax.Array]:
    """RoPE (cos, sin) f32[(B,) T, H // 2] for token frames at `frame_pos` int[(B,) F]."""
    return rope_cos_sin(frame_pos, grid_h, grid_w, self.head_dim, self.cfg.rope_theta)

  def run_blocks(self, tokens: jax.Array, inputs: BlockInputs,
                 extra_kv: KV | tuple[KV, ...] | None = None,
                 return_kv: bool = False) -> tuple[jax.Array, KV | None]:
    """Runs all L blocks (scanned or looped per config, with remat).

    Args:
      tokens: [B, F, P, D].
      inputs: layer-invariant block inputs.
      extra_kv: per-layer cached keys/values k, v [L, B, S, N, H] appended after the
        current tokens' keys, or a tuple of such segments (joined per layer, in order;
        `blocks.kv_segments`), or None.
      return_kv: also return the current tokens' post-RoPE k, v [L, B, T, N, H].

    Returns:
      (tokens [B, F, P, D], KV or None).
    """
    graphdef, state = nnx.split(self.blocks)

    def body(x, xs):
      layer_state, kv_in = xs
      block = nnx.merge(graphdef, layer_state)
      x, kv = block(x, inputs, kv_in)
      return _constrain_tokens(x), (kv if return_kv else None)

    policy = self.cfg.remat_policy
    if self.cfg.get("scan_layers", True):
      tokens, kvs = jax.lax.scan(layers.remat(body, policy), tokens, (state, extra_kv))
      return tokens, kvs
    step = layers.remat(body, policy, in_scan=False)
    outs = []
    for i in range(self.cfg.num_layers):
      tokens, kv = step(tokens, jax.tree.map(lambda a, i=i: a[i], (state, extra_kv)))
      outs.append(kv)
    kvs = jax.tree.map(lambda *a: jnp.stack(a), *outs) if return_kv else None
    return tokens, kvs

  def head(self, tokens: jax.Array, temb: jax.Array, grid_h: int, grid_w: int) -> jax.Array:
    """tokens [B, F, P, D], temb f32[B, F, D] -> [B, F * pt, h, w, C_out]."""
    b, f, _, _ = tokens.shape
    mod = self.scale_shift_table[...].astype(jnp.float32)[:, None] + temb[:, :, None]
    shift, scale = mod[:, :, 0:1], mod[:, :, 1:2]                      # [B, F, 1, D]
    h = (layers.layer_norm(tokens, self.cfg.eps) * (1 + scale) + shift).astype(self.dtype)
    out = self.proj_out(h)                                             # [B, F, P, pt*ph*pw*C]
    pt, ph, pw = self.patch_size
    out = out.reshape(b, f, grid_h, grid_w, pt, ph, pw, -1)
    out = out.transpose(0, 1, 4, 2, 5, 3, 6, 7)
    return out.reshape(b, f * pt, grid_h * ph, grid_w * pw, out.shape[-1])

  # ------------------------------------------------------------------------ forward

  def __call__(self, x: jax.Array, t: jax.Array, context: jax.Array, *,
               frame_pos=None, mask: AttentionMask | None = None, extra_kv: KV | None = None,
               return_kv: bool = False, block_cond: jax.Array | None = None,
               block_cond_mask: jax.Array | None = None):
    """Predicts the flow-matching velocity.

    Args:
      x: latents [B, F, h, w, C] (channels-last).
      t: per-frame timesteps [B, F'] (float, Wan scale 0..1000; F' = F // pt), or [B].
      context: text embeddings [B, Lt, Dt].
      frame_pos: int[F'] or int[B, F'] temporal RoPE index of each token frame;
        default arange(F').
      mask: self-attention mask over keys [current tokens (T) ; extra_kv slots (S)];
        None = full.
      extra_kv: per-layer cached k, v [L, B, S, N, H] (post-RoPE) appended after the
        current keys in self-attention.
      return_kv: also return the current tokens' post-RoPE k, v [L, B, T, N, H].
      block_cond: [B, F', P or 1, block_cond_dim], added through each block's
        zero-initialised `cond_proj` to the self-attention input.
      block_cond_mask: [B, F'] (1 = apply block_cond to that frame); default all 1.

    Returns:
      out [B, F, h, w, C_out] in the activation dtype; (out, KV) if return_kv.
    """
    tokens = self.embed_tokens(x)
    b, f, p, _ = tokens.shape
    _, ph, pw = self.patch_size
    grid_h, grid_w = x.shape[2] // ph, x.shape[3] // pw
    t = self._check_timesteps(t, b, f)
    temb, e, ctx = self.embed_conditions(t, context)
    if frame_pos is None:
      frame_pos = np.arange(f)
    elif np.shape(frame_pos)[-1] != f:
      raise ValueError(f"frame_pos has shape {np.shape(frame_pos)}; expected [{f}] or [B, {f}] "
                       f"(one index per token frame)")
    cos, sin = self.rope(frame_pos, grid_h, grid_w)
    self._check_cache(extra_kv, b)
    self._check_block_cond(block_cond, block_cond_mask, b, f, p)
    inputs = BlockInputs(e, ctx, cos, sin, AttentionMask() if mask is None else mask,
                         block_cond, block_cond_mask)
    tokens, kvs = self.run_blocks(tokens, inputs, extra_kv, return_kv)
    out = self.head(tokens, temb, grid_h, grid_w)
    return (out, kvs) if return_kv else out

  # ------------------------------------------------------------------------ input checks

  def _check_latents(self, x):
    c = self.cfg
    pt, ph, pw = self.patch_size
    if x.ndim != 5 or x.shape[-1] != c.in_channels:
      raise ValueError(f"latents must be [B, F, h, w, C={c.in_channels}] (channels-last), "
                       f"got shape {x.shape}")
    if x.shape[1] % pt or x.shape[2] % ph or x.shape[3] % pw:
      raise ValueError(f"latent shape {x.shape} [B, F, h, w, C]: F, h, w must be divisible by "
                       f"the patch size {self.patch_size}")

  def _check_timesteps(self, t, b, f):
    t = jnp.asarray(t)
    if t.ndim == 1 and t.shape[0] == b:
      return jnp.broadcast_to(t[:, None], (b, f))
    if t.shape != (b, f):
      raise ValueError(f"timesteps t must be [B={b}, F={f}] (one per token frame) or [B], "
                       f"got shape {t.shape}")
    return t

  def check_extra_kv(self, extra_kv: KV | tuple[KV, ...] | None, batch: int) -> None:
    """Raises ValueError unless extra_kv is None or k, v (of every segment) are
    [L, B, S, N, H]."""
    self._check_cache(extra_kv, batch)

  def _check_cache(self, extra_kv, b):
    c = self.cfg
    want = (c.num_layers, b, None, c.num_heads, self.head_dim)
    segments = kv_segments(extra_kv)
    for i, segment in enumerate(segments):
      where = "extra_kv" if len(segments) == 1 else f"extra_kv segment {i}"
      for name, a in zip(("k", "v"), segment):
        if a.ndim != 5 or any(w is not None and w != s for w, s in zip(want, a.shape)):
          raise ValueError(f"{where}.{name} has shape {a.shape}; expected [L={c.num_layers}, "
                           f"B={b}, S, N={c.num_heads}, H={self.head_dim}]")

  def _check_block_cond(self, cond, cond_mask, b, f, p):
    dim = self.cfg.get("block_cond_dim", 0)
    if cond is None:
      return
    if dim <= 0:
      raise ValueError("block_cond was given but config.model.block_cond_dim is 0; set it to the "
                       "conditioning width to create the per-block cond_proj layers")
    if cond.ndim != 4 or cond.shape[:2] != (b, f) or cond.shape[2] not in (1, p) or \
        cond.shape[3] != dim:
      raise ValueError(f"block_cond must be [B={b}, F={f}, P={p} or 1, {dim}], got {cond.shape}")
    if cond_mask is not None and tuple(cond_mask.shape) != (b, f):
      raise ValueError(f"block_cond_mask must be [B={b}, F={f}], got {cond_mask.shape}")
