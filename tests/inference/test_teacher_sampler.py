import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from realcam_jax.config import get_config
from realcam_jax.inference import teacher_sampler
from realcam_jax.models import layout
from realcam_jax.models.realcam import RealCamDiT
from realcam_jax.testing import random_dit
from realcam_jax.train import state as st


def test_batched_cfg_equals_separate_branches():
  config = get_config("teacher:tiny")
  model = RealCamDiT(config.model, rngs=nnx.Rngs(0))
  graphdef, params = st.split_model(model)
  leaves, tdef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = jax.tree.unflatten(tdef, [l + 0.1 * jax.random.normal(k, l.shape)
                                     for l, k in zip(leaves, keys)])
  rng = np.random.default_rng(0)
  src = jnp.asarray(rng.normal(size=(2, 3, 4, 4, 4)), jnp.float32)
  x = jnp.asarray(rng.normal(size=src.shape), jnp.float32)
  cam = jnp.asarray(rng.normal(size=(2, 3, 12)), jnp.float32)
  sigma = jnp.full((2, 3), 0.7)

  @jax.jit
  def run(params):
    model = st.merge(graphdef, params)
    guided = teacher_sampler.teacher_velocity(model, src, cam, None, cfg_scale=4.0)(x, sigma)
    cond = layout.split(model(src, x, sigma, cam), "interleaved")[1]
    uncond = layout.split(model(src, x, sigma, cam, cond_mask=jnp.zeros(2)), "interleaved")[1]
    out = teacher_sampler.sample(model, src, cam, None, jax.random.key(0), steps=3, shift=5.0,
                                 cfg_scale=2.0)
    return guided, cond, uncond, out

  guided, cond, uncond, out = run(params)
  np.testing.assert_allclose(guided, uncond + 4.0 * (cond - uncond), rtol=1e-4, atol=1e-5)
  assert float(jnp.abs(cond - uncond).max()) > 1e-4     # the camera matters once trained
  assert out.shape == src.shape and bool(jnp.isfinite(out).all())


def test_noise_scale_scales_the_starting_noise():
  """sampler.noise_scale: the Euler path from noise_scale x the key's noise; 0 is the
  deterministic path from the noise's mean, the same for every key."""
  from realcam_jax.diffusion import sampler, schedule
  cfg = get_config("configs/teacher.py:tiny", []).model
  graphdef, params = random_dit(cfg)
  model = st.merge(graphdef, params)
  k = jax.random.split(jax.random.key(4), 2)
  src = jax.random.normal(k[0], (1, 2, 4, 4, cfg.in_channels))
  cam = jax.random.normal(k[1], (1, 2, 12))
  run = lambda key, scale: teacher_sampler.sample(  # noqa: E731
      model, src, cam, None, key, steps=3, shift=5.0, cfg_scale=1.0, noise_scale=scale)
  v = teacher_sampler.teacher_velocity(model, src, cam)
  noise = jax.random.normal(jax.random.key(1), src.shape)
  want = sampler.euler_sample(v, 0.5 * noise, schedule.euler_sigmas(3, 5.0))
  np.testing.assert_allclose(run(jax.random.key(1), 0.5), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(run(jax.random.key(1), 0.0), run(jax.random.key(2), 0.0), atol=1e-6)
  assert float(jnp.abs(run(jax.random.key(1), 1.0) - run(jax.random.key(2), 1.0)).max()) > 1e-3
