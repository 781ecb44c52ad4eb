"""A tiny random diffusers `AutoencoderKLWan`, converted, encodes and decodes like diffusers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realcam_jax.ckpt import vae_weights
from realcam_jax.config import get_config
from realcam_jax.models import vae as V

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

MAX_REL_ERR = 1e-4


pytestmark = pytest.mark.usefixtures("fast_compile")


def tiny_reference(cfg, seed=0):
  """A random diffusers VAE for `cfg` (non-trivial norm gammas/biases, non-identity mean/std)."""
  torch.manual_seed(seed)
  ref = diffusers.AutoencoderKLWan(
      base_dim=cfg.base_dim, z_dim=cfg.z_dim, dim_mult=list(cfg.dim_mult),
      num_res_blocks=cfg.num_res_blocks, temperal_downsample=list(cfg.temporal_downsample),
      latents_mean=list(cfg.latents_mean), latents_std=list(cfg.latents_std)).eval()
  with torch.no_grad():
    for name, p in ref.named_parameters():
      if name.endswith(("gamma", "bias")):
        p.add_(0.2 * torch.randn_like(p))
  return ref


def rel_err(ours, ref) -> float:
  return float(np.abs(np.asarray(ours) - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("size", ["tiny"])
def test_parity_with_diffusers(size):
  config = get_config(f"vae:{size}")
  m = config.model
  m.latents_mean = tuple(np.linspace(-0.7, 0.9, m.z_dim).round(3).tolist())
  m.latents_std = tuple(np.linspace(0.6, 2.5, m.z_dim).round(3).tolist())
  ref = tiny_reference(m)
  flat = {k: v.numpy() for k, v in ref.state_dict().items()}
  state, fmt = vae_weights.convert(flat, "auto", config, "tiny reference")
  assert fmt == "diffusers"
  abstract = nnx.eval_shape(lambda: V.WanVAE.from_config(m, rngs=nnx.Rngs(0)))
  graphdef, _ = nnx.split(abstract)

  video = np.random.RandomState(0).uniform(-1, 1, (2, 9, 16, 24, 3)).astype(np.float32)
  with torch.no_grad():
    post = ref.encode(torch.from_numpy(video).permute(0, 4, 1, 2, 3)).latent_dist
    mean = torch.tensor(m.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(m.latents_std).view(1, -1, 1, 1, 1)
    z_ref = (post.mean - mean) / std                       # Wan's normalisation
    dec_ref = ref.decode(z_ref * std + mean).sample
  to_last = lambda t: t.permute(0, 2, 3, 4, 1).numpy()     # noqa: E731

  @jax.jit
  def run(state, video, z):
    vae = nnx.merge(graphdef, state)
    mu, logvar = vae.encode_moments(video)
    return mu, logvar, vae.normalize(mu), vae.decode(z)

  mu, logvar, z, dec = run(jax.tree.map(jnp.asarray, state), video, to_last(z_ref))
  errs = {"mu": rel_err(mu, to_last(post.mean)), "logvar": rel_err(logvar, to_last(post.logvar)),
          "z": rel_err(z, to_last(z_ref)), "decode": rel_err(dec, to_last(dec_ref))}
  print("relative errors vs diffusers:", errs)
  assert z.shape == (2, 3, 2, 3, m.z_dim) and dec.shape == video.shape
  assert max(errs.values()) <= MAX_REL_ERR, errs
