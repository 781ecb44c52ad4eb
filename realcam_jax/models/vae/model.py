"""The Wan2.1 causal video VAE (diffusers `AutoencoderKLWan`, Wan 2.1 variant) in Flax NNX.

Shapes (channels last; s = spatial factor 2**(stages-1), r = temporal factor
2**sum(temporal_downsample); Wan2.1: s = 8, r = 4, z = 16):

  video    f32[B, T, H, W, 3] in [-1, 1], T = 1 + r*k, H and W multiples of s
  latents  f32[B, F, H/s, W/s, z] with F = 1 + (T-1)/r

Latent normalisation (exactly Wan's and diffusers' pipelines):

  encode:  z  = (mu - latents_mean) / latents_std     (mu = posterior mean)
  decode:  mu = z * latents_std + latents_mean

per channel, with `latents_mean`/`latents_std` from the config (Wan2.1's values
in `configs/vae.py:wan2_1`; the original Wan code writes it as
`scale = [mean, 1/std]; (mu - scale[0]) * scale[1]`). The DiT works on `z`.

The encoder consumes the first frame alone and then groups of r frames; the
decoder turns the first latent frame into 1 frame and every later one into r
frames. Both are causal, so a video can be processed in chunks with a feature
cache (see `streaming.py`); the whole-video methods here are the same
computation run as one chunk from a fresh (zero) cache.

Bad input raises `VAEInputError` (see `inputs.py` for the policy).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from realcam_jax.models.layers import to_dtype
from realcam_jax.models.vae.decoder import Decoder3d
from realcam_jax.models.vae.encoder import Encoder3d
from realcam_jax.models.vae.inputs import check_latents, check_video
from realcam_jax.models.vae.layers import Cache, CausalConv3d

LOGVAR_RANGE = (-30.0, 20.0)  # diffusers' DiagonalGaussianDistribution clamp


class WanVAE(nnx.Module):
  """Encoder, `quant_conv` (1x1x1, 2z -> 2z), `post_quant_conv` (1x1x1, z -> z), decoder.

  conv_impl: how the causal 3D convs run ('auto' | 'conv3d' | 'taps', see
  `layers.conv3d`); it changes speed only, not parameters or results.
  """

  def __init__(self, *, base_dim: int, z_dim: int, dim_mult: Sequence[int] = (1, 2, 4, 4),
               num_res_blocks: int = 2,
               temporal_downsample: Sequence[bool] = (False, True, True),
               latents_mean: Sequence[float] | None = None,
               latents_std: Sequence[float] | None = None,
               decoder_base_dim: int | None = None, in_channels: int = 3,
               out_channels: int = 3, conv_impl: str = "auto", dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    dim_mult, temporal_downsample = list(dim_mult), [bool(b) for b in temporal_downsample]
    if len(temporal_downsample) != len(dim_mult) - 1:
      raise ValueError(f"temporal_downsample needs one entry per downsampling stage "
                       f"({len(dim_mult) - 1} for dim_mult {dim_mult}), got {temporal_downsample}")
    mean = tuple(float(v) for v in (latents_mean if latents_mean is not None else [0.0] * z_dim))
    std = tuple(float(v) for v in (latents_std if latents_std is not None else [1.0] * z_dim))
    if len(mean) != z_dim or len(std) != z_dim or min(std) <= 0:
      raise ValueError(f"latents_mean/latents_std need {z_dim} entries (std > 0), got "
                       f"{len(mean)} and {len(std)} entries")
    kw = dict(conv_impl=conv_impl, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.z_dim = z_dim
    self.in_channels = in_channels
    self.spatial_factor = 2 ** (len(dim_mult) - 1)
    self.temporal_factor = 2 ** sum(temporal_downsample)
    self.latents_mean, self.latents_std = mean, std
    self.dtype = dtype
    self.encoder = Encoder3d(in_channels=in_channels, base_dim=base_dim, out_channels=2 * z_dim,
                             dim_mult=dim_mult, num_res_blocks=num_res_blocks,
                             temporal_downsample=temporal_downsample, **kw)
    self.quant_conv = CausalConv3d(2 * z_dim, 2 * z_dim, 1, **kw)
    self.post_quant_conv = CausalConv3d(z_dim, z_dim, 1, **kw)
    self.decoder = Decoder3d(z_dim=z_dim, base_dim=decoder_base_dim or base_dim,
                             out_channels=out_channels, dim_mult=dim_mult,
                             num_res_blocks=num_res_blocks,
                             temporal_upsample=temporal_downsample[::-1], **kw)

  @classmethod
  def from_config(cls, model_config: Any, *, rngs: nnx.Rngs) -> "WanVAE":
    """Builds from a `configs/vae.py` `model` section (a ConfigDict or dict)."""
    c = dict(model_config)
    return cls(base_dim=c["base_dim"], z_dim=c["z_dim"], dim_mult=c["dim_mult"],
               num_res_blocks=c["num_res_blocks"], temporal_downsample=c["temporal_downsample"],
               latents_mean=c.get("latents_mean"), latents_std=c.get("latents_std"),
               decoder_base_dim=c.get("decoder_base_dim"),
               in_channels=c.get("in_channels", 3), out_channels=c.get("out_channels", 3),
               conv_impl=c.get("conv_impl", "auto"), dtype=to_dtype(c.get("dtype", "float32")),
               param_dtype=to_dtype(c.get("param_dtype", "float32")), rngs=rngs)

  # -- normalisation ---------------------------------------------------------------------------

  def normalize(self, mu: jax.Array) -> jax.Array:
    """Raw posterior mean [..., z] -> DiT latents `(mu - mean) / std`."""
    mean = jnp.asarray(self.latents_mean, jnp.float32)
    std = jnp.asarray(self.latents_std, jnp.float32)
    return ((mu.astype(jnp.float32) - mean) / std).astype(mu.dtype)

  def denormalize(self, z: jax.Array) -> jax.Array:
    """DiT latents [..., z] -> raw latents `z * std + mean`."""
    mean = jnp.asarray(self.latents_mean, jnp.float32)
    std = jnp.asarray(self.latents_std, jnp.float32)
    return (z.astype(jnp.float32) * std + mean).astype(z.dtype)

  # -- cache-aware steps (used by the whole-video methods and by streaming.py) -----------------

  def encode_step(self, video: jax.Array, cache: Cache, *, first: bool):
    """One encoder chunk, no input checks: -> (mu, logvar, cache), raw (unnormalised) f32."""
    h, cache = self.encoder(video.astype(self.dtype), cache, first=first)
    h = self.quant_conv(h)[0].astype(jnp.float32)
    mu, logvar = jnp.split(h, 2, axis=-1)
    return mu, jnp.clip(logvar, *LOGVAR_RANGE), cache

  def decode_step(self, latents_raw: jax.Array, cache: Cache, *, first: bool):
    """One decoder chunk from raw latents, no checks, no clipping: -> (video f32, cache)."""
    x = self.post_quant_conv(latents_raw.astype(self.dtype))[0]
    x, cache = self.decoder(x, cache, first=first)
    return x.astype(jnp.float32), cache

  # -- whole videos ----------------------------------------------------------------------------

  def _check_video(self, video, **kw):
    check_video(video, spatial=self.spatial_factor, temporal=self.temporal_factor,
                channels=self.in_channels, **kw)

  def encode_moments(self, video: jax.Array) -> tuple[jax.Array, jax.Array]:
    """video [B, T, H, W, 3] in [-1, 1] -> raw posterior (mu, logvar), each [B, F, H/s, W/s, z]."""
    self._check_video(video)
    mu, logvar, _ = self.encode_step(video, None, first=True)
    return mu, logvar

  def encode(self, video: jax.Array) -> jax.Array:
    """video [B, T, H, W, 3] in [-1, 1] -> normalised latents (mode) [B, F, H/s, W/s, z]."""
    return self.normalize(self.encode_moments(video)[0])

  def decode_raw(self, latents_raw: jax.Array) -> jax.Array:
    """Raw latents [B, F, h, w, z] -> video [B, 1 + r*(F-1), h*s, w*s, 3], unclipped (training)."""
    check_latents(latents_raw, z_dim=self.z_dim)
    return self.decode_step(latents_raw, None, first=True)[0]

  def decode(self, latents: jax.Array) -> jax.Array:
    """Normalised latents [B, F, h, w, z] -> video [B, 1 + r*(F-1), h*s, w*s, 3] in [-1, 1]."""
    check_latents(latents, z_dim=self.z_dim)
    return jnp.clip(self.decode_raw(self.denormalize(latents)), -1.0, 1.0)

  def __call__(self, video: jax.Array, key: jax.Array | None = None):
    """Reconstruction for training: -> (video_hat unclipped, mu, logvar); samples z when `key`."""
    mu, logvar = self.encode_moments(video)
    z = mu if key is None else sample_posterior(mu, logvar, key)
    return self.decode_raw(z), mu, logvar


def sample_posterior(mu: jax.Array, logvar: jax.Array, key: jax.Array) -> jax.Array:
  """z = mu + exp(logvar / 2) * eps, eps ~ N(0, 1) (raw latent space)."""
  eps = jax.random.normal(key, mu.shape, jnp.float32)
  return (mu.astype(jnp.float32) + jnp.exp(0.5 * logvar.astype(jnp.float32)) * eps).astype(mu.dtype)


def create_vae(model_config: Any, *, seed: int = 0) -> WanVAE:
  """A randomly initialised WanVAE, with the random numbers drawn on the host by NumPy.

  Same distributions as the NNX initialisers the constructor uses (conv kernels
  N(0, 1/fan_in) (LeCun, untruncated), biases 0, norm gammas 1), but without
  compiling a JAX RNG kernel per parameter shape, which takes minutes on a
  loaded CPU. Deterministic in `seed`.
  """
  import numpy as np
  abstract = nnx.eval_shape(lambda: WanVAE.from_config(model_config, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(seed)

  def init(path, leaf):
    name, shape, dtype = str(path[-1]), leaf.shape, leaf.dtype
    if name == "kernel":
      fan_in = int(np.prod(shape[:-1]))
      value = rng.standard_normal(shape, np.float32) / np.sqrt(fan_in)
    elif name == "gamma":
      value = np.ones(shape, np.float32)
    else:
      value = np.zeros(shape, np.float32)
    return jnp.asarray(value, dtype)

  flat = [(p, v.replace(value=init(p, v.get_value()))) for p, v in nnx.to_flat_state(state)]
  return nnx.merge(graphdef, nnx.from_flat_state(flat))


def latent_shape(model: WanVAE, batch: int, frames: int, height: int, width: int) -> tuple:
  """Latent shape of a video: (B, 1 + (T-1)/r, H/s, W/s, z) (sizes must be accepted)."""
  return (batch, 1 + (frames - 1) // model.temporal_factor, height // model.spatial_factor,
          width // model.spatial_factor, model.z_dim)
