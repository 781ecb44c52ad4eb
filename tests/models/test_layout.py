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


def test_bad_names_raise():
  with pytest.raises(ValueError, match="unknown layout 'zigzag'"):
    layout.is_target(2, "zigzag")
  with pytest.raises(ValueError, match="unknown pair_rope"):
    layout.frame_positions(2, "interleaved", "rotary")
  with pytest.raises(ValueError, match="same shape"):
    layout.combine(jnp.zeros((1, 2)), jnp.zeros((1, 3)), "prefix")
