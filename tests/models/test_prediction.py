"""model.prediction: Wan's velocity head vs the demo's source-residual head."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realcam_jax.config import get_config
from realcam_jax.models import layout
from realcam_jax.models.realcam import (RESIDUAL_SIGMA_FLOOR, RealCamDiT, anchor_on_source,
                                        precondition, preconditioned_velocity)
from realcam_jax.testing import perturb


def _inputs(cfg, b=2, f=3, hw=4):
  k = jax.random.split(jax.random.key(1), 3)
  c = cfg.in_channels
  src = jax.random.normal(k[0], (b, f, hw, hw, c))
  tgt = jax.random.normal(k[1], (b, f, hw, hw, c))
  sigma = jnp.array([[0.9, 0.5, 0.02], [0.3, 1.0, 0.05]])[:b, :f]
  cam = jax.random.normal(k[2], (b, f, 12))
  return src, tgt, sigma, cam


@pytest.mark.parametrize("name", ["interleaved", "prefix"])
def test_source_residual_starts_by_copying_the_source(name):
  cfg = get_config("configs/teacher.py:tiny", []).model
  cfg.prediction, cfg.layout = "source_residual", name
  cfg.pair_rope = "shared" if name == "interleaved" else "sequential"
  model = RealCamDiT(cfg, rngs=nnx.Rngs(0))
  src, tgt, sigma, cam = _inputs(cfg)
  v = layout.split(model(src, tgt, sigma, cam), name)[1]
  # The parameter tree is Wan's plus the RealCam layers: no extra parameter.
  plain = RealCamDiT(get_config("configs/teacher.py:tiny", []).model, rngs=nnx.Rngs(0))
  assert (jax.tree.structure(nnx.state(model, nnx.Param))
          == jax.tree.structure(nnx.state(plain, nnx.Param)))
  # Wan's zero-initialised output projection: x0_hat = source, so
  # v = (x_t - source) / max(sigma, floor) ...
  denom = np.maximum(np.asarray(sigma), RESIDUAL_SIGMA_FLOOR)[..., None, None, None]
  np.testing.assert_allclose(v, (np.asarray(tgt) - np.asarray(src)) / denom, rtol=1e-5, atol=1e-5)
  # ... and the x0 a sampler reads back (x_t - sigma v) is the source where sigma >= floor.
  x0 = np.asarray(tgt) - np.asarray(sigma)[..., None, None, None] * np.asarray(v)
  np.testing.assert_allclose(x0[0, :2], np.asarray(src)[0, :2], atol=1e-5)


def test_anchor_on_source_by_hand():
  out = jnp.arange(2 * 2 * 1 * 1 * 2, dtype=jnp.float32).reshape(1, 4, 1, 1, 2)  # [s0,t0,s1,t1]
  src = jnp.full((1, 2, 1, 1, 2), 1.0)
  tgt = jnp.full((1, 2, 1, 1, 2), 3.0)
  sigma = jnp.array([[0.5, 0.01]])
  got = np.asarray(anchor_on_source(out, src, tgt, sigma, "interleaved"))
  # target 0: out [2, 3] -> x0 = [3, 4]; v = (3 - x0) / 0.5 = [0, -2]
  # target 1: out [6, 7] -> x0 = [7, 8]; v = (3 - x0) / max(0.01, 0.05) = [-80, -100]
  np.testing.assert_allclose(got[0, 1, 0, 0], [0.0, -2.0], rtol=1e-6)
  np.testing.assert_allclose(got[0, 3, 0, 0], [-80.0, -100.0], rtol=1e-6)
  np.testing.assert_array_equal(got[0, 0], np.asarray(out)[0, 0])   # sources untouched
  np.testing.assert_array_equal(got[0, 2], np.asarray(out)[0, 2])


def test_velocity_is_the_default_and_bad_names_are_refused():
  cfg = get_config("configs/teacher.py:tiny", []).model
  assert cfg.prediction == "velocity"
  model = RealCamDiT(cfg, rngs=nnx.Rngs(0))
  assert model.prediction == "velocity"
  cfg.prediction = "x0"
  with pytest.raises(ValueError, match="model.prediction"):
    RealCamDiT(cfg, rngs=nnx.Rngs(0))


def _perturbed(cfg):
  """A model with random non-zero weights (a fresh one outputs zeros everywhere)."""
  graphdef, params = nnx.split(RealCamDiT(cfg, rngs=nnx.Rngs(0)))
  return nnx.merge(graphdef, perturb(params, 0.2))


def test_unconditional_rows_see_the_empty_prompt_encoding():
  cfg = get_config("configs/teacher.py:tiny", []).model
  model = _perturbed(cfg)
  src, tgt, sigma, cam = _inputs(cfg)
  k1, k2 = jax.random.split(jax.random.key(7))
  text = jax.random.normal(k1, (2, cfg.text_len, cfg.text_dim))
  empty = jax.random.normal(k2, (1, cfg.text_len, cfg.text_dim))
  mask = jnp.array([1.0, 0.0])
  got = model(src, tgt, sigma, cam, text, cond_mask=mask, uncond_text=empty)
  # Row 0 is conditioned on its text; row 1 is unconditional and sees `empty`, which is
  # what a conditioned call with `empty` as its text and no camera computes.
  want0 = model(src[:1], tgt[:1], sigma[:1], cam[:1], text[:1])
  want1 = model(src[1:], tgt[1:], sigma[1:], None, empty)
  np.testing.assert_allclose(got[:1], want0, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[1:], want1, rtol=1e-4, atol=1e-4)
  assert float(jnp.abs(want1 - model(src[1:], tgt[1:], sigma[1:], None, text[1:])).max()) > 1e-3
  # Without uncond_text an unconditional row sees zeros, as before.
  zeros = model(src[1:], tgt[1:], sigma[1:], None, jnp.zeros_like(empty))
  np.testing.assert_allclose(model(src, tgt, sigma, cam, text, cond_mask=mask)[1:], zeros,
                             rtol=1e-4, atol=1e-4)


def test_the_preconditioning_gain_is_the_least_squares_one():
  # x0 = a + e with e ~ N(0, s^2); x_t = (1 - sigma) x0 + sigma n. Fit the scalar gain c
  # of x0 - a on y = x_t - (1 - sigma) a by least squares from samples: it is c_skip,
  # and the rms error left is c_out.
  s = 0.7
  k = jax.random.split(jax.random.key(0), 3)
  a = jax.random.normal(k[0], (200_000,))
  e = s * jax.random.normal(k[1], a.shape)
  n = jax.random.normal(k[2], a.shape)
  for sigma in (0.05, 0.3, 0.6, 0.95):
    y = np.asarray((1 - sigma) * e + sigma * n)
    fit = float(np.dot(y, np.asarray(e)) / np.dot(y, y))
    c_skip, c_out = map(float, precondition(sigma, s))
    assert abs(fit - c_skip) < 0.01, (sigma, fit, c_skip)
    assert abs(float(np.std(np.asarray(e) - fit * y)) - c_out) < 0.01
  np.testing.assert_allclose(precondition(0.0, s), (1.0, 0.0))   # no noise: x0 = x_t
  np.testing.assert_allclose(precondition(1.0, s), (0.0, s))     # all noise: x0 = a + s out


@pytest.mark.parametrize("sigma", [0.0, 0.01, 0.3, 1.0])
def test_preconditioned_velocity_implies_its_x0(sigma):
  k = jax.random.split(jax.random.key(2), 3)
  a, x_t, out = (jax.random.normal(kk, (1, 2, 3, 3, 4)) for kk in k)
  sig = jnp.full((1, 2), sigma)
  v = np.asarray(preconditioned_velocity(out, a, x_t, sig, 0.7))
  c_skip, c_out = map(float, precondition(sigma, 0.7))
  a, x_t, out = map(np.asarray, (a, x_t, out))
  x0_hat = a + c_skip * (x_t - (1 - sigma) * a) + c_out * out
  # the sampler's read-back x_t - sigma v ...
  np.testing.assert_allclose(x_t - sigma * v, x0_hat, atol=1e-5)
  # ... and the velocity itself where it is defined by division (no floor, unlike the plain
  # residual); at sigma = 0 the limit of (x_t - x0_hat) / sigma, -x_t - out
  if sigma > 0:
    np.testing.assert_allclose(v, (x_t - x0_hat) / sigma, rtol=1e-4, atol=1e-4)
  else:
    np.testing.assert_allclose(v, -x_t - out, rtol=1e-5, atol=1e-5)


def test_a_fresh_preconditioned_model_gives_the_least_squares_estimate():
  cfg = get_config("configs/teacher.py:tiny", []).model
  cfg.prediction, cfg.anchor_std = "source_residual", 0.5
  model = RealCamDiT(cfg, rngs=nnx.Rngs(0))
  src, tgt, sigma, cam = _inputs(cfg)
  v = np.asarray(layout.split(model(src, tgt, sigma, cam), cfg.layout)[1])
  x0 = np.asarray(tgt) - np.asarray(sigma)[..., None, None, None] * v
  c_skip = np.asarray(precondition(sigma, 0.5)[0])[..., None, None, None]
  s_, t_ = np.asarray(src), np.asarray(tgt)
  keep = (1 - np.asarray(sigma))[..., None, None, None]
  np.testing.assert_allclose(x0, s_ + c_skip * (t_ - keep * s_), rtol=1e-4, atol=1e-4)
  cfg.anchor_std = -1.0
  with pytest.raises(ValueError, match="model.anchor_std"):
    RealCamDiT(cfg, rngs=nnx.Rngs(0))
