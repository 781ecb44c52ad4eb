import jax
import jax.numpy as jnp
import numpy as np

from realcam_jax.train import dmd_loss


def test_gradient_equals_formula():
  rng = np.random.default_rng(0)
  x, real, fake = (jnp.asarray(rng.normal(size=(2, 3, 4, 4, 2)), jnp.float32) for _ in range(3))
  grad = jax.grad(lambda x: dmd_loss.dmd_pseudo_loss(x, real, fake)[0])(x)
  xn, rn, fn = map(np.asarray, (x, real, fake))
  norm = np.abs(xn - rn).mean(axis=(1, 2, 3, 4), keepdims=True)   # per sample
  expected = (fn - rn) / norm / xn.size
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-8)


def test_no_gradient_through_scores():
  rng = np.random.default_rng(1)
  x, real, fake = (jnp.asarray(rng.normal(size=(1, 2, 3, 3, 1)), jnp.float32) for _ in range(3))
  g_real = jax.grad(lambda r: dmd_loss.dmd_pseudo_loss(x, r, fake)[0])(real)
  g_fake = jax.grad(lambda f: dmd_loss.dmd_pseudo_loss(x, real, f)[0])(fake)
  assert not np.asarray(g_real).any() and not np.asarray(g_fake).any()


def test_zero_when_scores_agree():
  x = jnp.ones((1, 1, 2, 2, 1))
  loss, m = dmd_loss.dmd_pseudo_loss(x, x * 0.5, x * 0.5)
  assert float(loss) == 0.0 and float(m["dmd_grad_norm"]) == 0.0
