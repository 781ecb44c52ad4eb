import jax.numpy as jnp
import numpy as np
import pytest

from realcam_jax.models import layout


@pytest.mark.parametrize("name", layout.LAYOUTS)
def test_combine_split_round_trip(name):
  rng = np.random.default_rng(0)
  s = jnp.asarray(rng.normal(size=(2, 5, 3, 4, 6)))
  t = jnp.asarray(rng.normal(size=(2, 5, 3, 4, 6)))
  x = layout.combine(s, t, name)
  assert x.shape == (2, 10, 3, 4, 6)
  s2, t2 = layout.split(x, name)
  np.testing.assert_array_equal(s2, s)
  np.testing.assert_array_equal(t2, t)


def test_interleaved_order_is_pairs():
  s = jnp.arange(3)[None] * 10
  t = jnp.arange(3)[None] * 10 + 1
  np.testing.assert_array_equal(layout.combine(s, t, "interleaved")[0], [0, 1, 10, 11, 20, 21])
  np.testing.assert_array_equal(layout.combine(s, t, "prefix")[0], [0, 10, 20, 1, 11, 21])
  np.testing.assert_array_equal(layout.is_target(3, "interleaved"), [0, 1, 0, 1, 0, 1])
  np.testing.assert_array_equal(layout.is_target(3, "prefix"), [0, 0, 0, 1, 1, 1])


def test_frame_positions():
  np.testing.assert_array_equal(layout.frame_positions(3, "interleaved", "shared"),
                                [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(layout.frame_positions(3, "interleaved", "sequential"),
                                [0, 1, 2, 3, 4, 5])
  np.testing.assert_array_equal(layout.frame_positions(3, "prefix", "shared"), [0, 1, 2, 0, 1, 2])
  np.testing.assert_array_equal(layout.frame_positions(3, "prefix", "sequential"),
                                [0, 1, 2, 3, 4, 5])
  np.testing.assert_array_equal(layout.frame_positions(2, "interleaved", "shared", first_pair=3),
                                [3, 3, 4, 4])


def test_chunk_positions_continue_the_whole_sequence_for_every_pair_rope():
  """Chunk c of K pairs gets the positions its frames have in the whole sequence (traced
  first_pair too); interleaved + sequential moves 2 positions per pair."""
  import jax
  k, n = 2, 3
  for lay, rope in (("interleaved", "shared"), ("interleaved", "sequential"), ("prefix", "shared")):
    whole = layout.frame_positions(k * n, lay, rope)
    src, tgt = layout.split(whole[None], lay)
    for c in range(n):
      want = layout.combine(src[:, c * k:(c + 1) * k], tgt[:, c * k:(c + 1) * k], lay)[0]
      np.testing.assert_array_equal(layout.frame_positions(k, lay, rope, first_pair=c * k), want)
      traced = jax.jit(lambda fp: layout.frame_positions(k, lay, rope, first_pair=fp))(c * k)
      np.testing.assert_array_equal(np.asarray(traced), want)
      np.testing.assert_array_equal(
          layout.pair_frame_positions(np.arange(c * k, (c + 1) * k), lay, rope), want)
  assert layout.pair_stride("interleaved", "sequential") == 2
  assert layout.pair_stride("prefix", "shared") == layout.pair_stride("interleaved", "shared") == 1
  np.testing.assert_array_equal(layout.frame_positions(2, "interleaved", "sequential", 3),
                                [6, 7, 8, 9])


def test_bad_names_raise():
  with pytest.raises(ValueError, match="unknown layout 'zigzag'"):
    layout.is_target(2, "zigzag")
  with pytest.raises(ValueError, match="unknown pair_rope"):
    layout.frame_positions(2, "interleaved", "rotary")
  with pytest.raises(ValueError, match="same shape"):
    layout.combine(jnp.zeros((1, 2)), jnp.zeros((1, 3)), "prefix")


def _tiny_velocity(model_update, params=None):
  """Target velocity of the tiny teacher (source skip on, non-zero camera layers) under
  `model_update`, with the same weights (`params`) for every layout."""
  import jax
  from flax import nnx

  from realcam_jax.config import get_config
  from realcam_jax.models.realcam import RealCamDiT
  cfg = get_config("teacher:tiny").model
  cfg.update(source_skip=True, **model_update)
  model = RealCamDiT(cfg, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  if params is None:   # randomise the zero-initialised layers so every path matters
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = treedef.unflatten([x + 0.05 * jax.random.normal(k, x.shape, x.dtype)
                                for x, k in zip(leaves, keys)])
  model = nnx.merge(graphdef, params)
  rng = np.random.default_rng(0)
  b, f, h, w, c = 1, 3, 4, 4, cfg.in_channels
  src = jnp.asarray(rng.normal(size=(b, f, h, w, c)), jnp.float32)
  tgt = jnp.asarray(rng.normal(size=(b, f, h, w, c)), jnp.float32)
  cam = jnp.asarray(rng.normal(size=(b, f, 12)), jnp.float32)
  sigma = jnp.full((b, f), 0.7, jnp.float32)
  v = model(src, tgt, sigma, cam)
  return layout.split(v, cfg.layout)[1], params


def test_prefix_with_shared_rope_is_a_permutation_of_interleaved():
  # Attention is permutation-equivariant: with the same positions per token the prefix
  # layout computes exactly what the interleaved one does. That is why the ReCamMaster
  # baseline (configs/teacher.py:SIZE,prefix) uses sequential positions.
  ref, params = _tiny_velocity(dict(layout="interleaved", pair_rope="shared"))
  same, _ = _tiny_velocity(dict(layout="prefix", pair_rope="shared"), params)
  base, _ = _tiny_velocity(dict(layout="prefix", pair_rope="sequential"), params)
  np.testing.assert_allclose(same, ref, atol=1e-5, rtol=1e-5)
  assert float(jnp.max(jnp.abs(base - ref))) > 1e-3


def test_prefix_ablation_is_the_recammaster_baseline():
  from realcam_jax.config import get_config
  from realcam_jax.eval import systems
  for spec in ("teacher:demo,prefix", "teacher:tiny,prefix"):
    m = get_config(spec).model
    assert (m.layout, m.pair_rope) == ("prefix", "sequential")
  m = systems.prefix_config(get_config("student:tiny")).model
  assert (m.layout, m.pair_rope) == ("prefix", "sequential")
