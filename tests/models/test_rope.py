import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realcam_jax.models import rope


def test_split_follows_wan():
  assert rope.rope_split(128) == (44, 42, 42)   # Wan2.1 1.3B / 14B head dim
  assert rope.rope_split(16) == (8, 4, 4)
  assert rope.rope_split(64) == (24, 20, 20)
  with pytest.raises(ValueError, match="even head dim"):
    rope.rope_split(15)


@pytest.mark.parametrize("head_dim", [16, 128])
def test_tables_match_diffusers(head_dim):
  torch = pytest.importorskip("torch")
  tw = pytest.importorskip("diffusers.models.transformers.transformer_wan")
  f, h, w = 3, 4, 5
  ref = tw.WanRotaryPosEmbed(head_dim, (1, 2, 2), max_seq_len=1024)
  cos_ref, sin_ref = ref(torch.zeros(1, 1, f, 2 * h, 2 * w))     # [1, T, 1, H] interleaved
  cos, sin = rope.rope_cos_sin(np.arange(f), h, w, head_dim)
  np.testing.assert_allclose(np.asarray(cos), cos_ref[0, :, 0, 0::2].numpy(), atol=1e-7)
  np.testing.assert_allclose(np.asarray(sin), sin_ref[0, :, 0, 1::2].numpy(), atol=1e-7)
  np.testing.assert_array_equal(cos_ref[0, :, 0, 0::2].numpy(), cos_ref[0, :, 0, 1::2].numpy())


def test_apply_matches_complex_rotation():
  """Wan's original formulation: channel pairs as complex numbers times exp(i * angle)."""
  r = np.random.default_rng(0)
  f, h, w, n, hd = 2, 3, 2, 2, 16
  x = r.standard_normal((1, f * h * w, n, hd)).astype(np.float32)
  pos = np.array([5, 9])
  ang = np.asarray(rope.rope_angles(pos, h, w, hd)).reshape(f * h * w, hd // 2)
  xc = x[..., 0::2].astype(np.float64) + 1j * x[..., 1::2]
  yc = xc * np.exp(1j * ang)[None, :, None, :]
  want = np.stack([yc.real, yc.imag], -1).reshape(x.shape)
  cos, sin = rope.rope_cos_sin(pos, h, w, hd)
  np.testing.assert_allclose(np.asarray(rope.apply_rope(jnp.asarray(x), cos, sin)), want,
                             atol=1e-5)
  # Spot-check the layout [t | h | w]: token (frame 1, y 2, x 1), first pair of each part.
  tok = 1 * h * w + 2 * w + 1
  t_dim, h_dim, _ = rope.rope_split(hd)
  assert ang[tok, 0] == pytest.approx(9.0)
  assert ang[tok, t_dim // 2] == pytest.approx(2.0)
  assert ang[tok, (t_dim + h_dim) // 2] == pytest.approx(1.0)


def test_scores_depend_on_position_differences_only():
  r = np.random.default_rng(1)
  q = jnp.asarray(r.standard_normal((1, 4, 1, 16)), jnp.float32)
  k = jnp.asarray(r.standard_normal((1, 4, 1, 16)), jnp.float32)

  def scores(pos):
    cos, sin = rope.rope_cos_sin(pos, 2, 2, 16)
    return np.einsum("bqnh,bknh->qk", rope.apply_rope(q, cos, sin), rope.apply_rope(k, cos, sin))

  np.testing.assert_allclose(scores(np.array([3])), scores(np.array([40])), atol=1e-4)


def test_traced_positions_match_concrete():
  cos_c, sin_c = rope.rope_cos_sin(np.array([[0, 1, 2], [7, 7, 8]]), 2, 3, 16)
  cos_t, sin_t = jax.jit(lambda p: rope.rope_cos_sin(p, 2, 3, 16))(
      jnp.array([[0, 1, 2], [7, 7, 8]]))
  assert cos_c.shape == (2, 18, 8)
  np.testing.assert_allclose(np.asarray(cos_t), np.asarray(cos_c), atol=1e-6)
  np.testing.assert_allclose(np.asarray(sin_t), np.asarray(sin_c), atol=1e-6)


def test_shape_errors():
  cos, sin = rope.rope_cos_sin(np.arange(2), 2, 2, 16)
  with pytest.raises(ValueError, match="do not fit x"):
    rope.apply_rope(jnp.zeros((1, 7, 2, 16)), cos, sin)
