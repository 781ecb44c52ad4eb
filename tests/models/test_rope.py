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


def _wan_scores(q, k, frame_pos, h, w, head_dim, theta=10000.0):
  """Independent reference: q.k scores [T, T] with Wan's 3D RoPE written out per channel
  pair (complex form, float64): pair j of a part of size d turns by pos * theta^(-2j/d)."""
  hw = 2 * (head_dim // 6)
  parts = [head_dim - 2 * hw, hw, hw]                       # [t | h | w]
  grid = [(f, y, x) for f in frame_pos for y in range(h) for x in range(w)]
  ang = np.array([[pos * theta ** (-2.0 * j / d) for pos, d in zip(tok, parts)
                   for j in range(d // 2)] for tok in grid])   # [T, H // 2]
  qc = (q[0, :, 0, 0::2] + 1j * q[0, :, 0, 1::2]) * np.exp(1j * ang)
  kc = (k[0, :, 0, 0::2] + 1j * k[0, :, 0, 1::2]) * np.exp(1j * ang)
  return np.real(qc @ np.conj(kc).T)


def test_scores_depend_on_position_differences_with_wan_frequencies():
  """Two frames d apart, at two offsets: the scores (cross-frame ones included) are the
  same at both offsets and equal the reference's. A single frame would not test the
  temporal frequencies at all (its rotations cancel)."""
  r = np.random.default_rng(1)
  h, w, hd, d = 2, 2, 16, 5
  q = r.standard_normal((1, 2 * h * w, 1, hd))
  k = r.standard_normal((1, 2 * h * w, 1, hd))
  want = _wan_scores(q, k, [0, d], h, w, hd)

  def scores(pos):
    cos, sin = rope.rope_cos_sin(pos, h, w, hd)
    qr = rope.apply_rope(jnp.asarray(q, jnp.float32), cos, sin)
    kr = rope.apply_rope(jnp.asarray(k, jnp.float32), cos, sin)
    return np.einsum("bqnh,bknh->qk", qr, kr)

  for offset in (3, 40):
    np.testing.assert_allclose(scores(np.array([offset, offset + d])), want, atol=1e-4)


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
