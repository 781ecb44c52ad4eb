"""LoopAug: palindromes, windows that contain the turn, loop-closed poses."""

import numpy as np
import pytest

from realcam_jax.camera import get_trajectory
from realcam_jax.data import loopaug


def test_palindrome():
  np.testing.assert_array_equal(loopaug.palindrome(4), [0, 1, 2, 3, 2, 1, 0])
  np.testing.assert_array_equal(loopaug.palindrome(1), [0])


@pytest.mark.parametrize("num_frames, length", [(9, 9), (33, 33), (33, 17), (5, 9), (20, 7)])
def test_centred_window_starts_and_ends_on_the_same_frame(num_frames, length):
  rng = np.random.default_rng(0)
  for _ in range(20):
    idx, turn = loopaug.loop_window(num_frames, length, rng)
    assert len(idx) == length and turn == (length - 1) // 2
    assert idx[0] == idx[-1]
    assert idx[turn] == idx.max()                               # the turn is in the window
    assert np.all(np.diff(idx[:turn + 1]) == 1) and np.all(np.diff(idx[turn:]) == -1)
    assert 0 <= idx.min() and idx.max() < num_frames


def test_off_centre_turns_stay_inside_the_clip_and_contain_the_turn():
  rng = np.random.default_rng(1)
  turns = set()
  for _ in range(200):
    idx, turn = loopaug.loop_window(12, 10, rng, turn_range=(0.2, 0.9))
    turns.add(turn)
    assert 1 <= turn <= 8 and idx[turn] == idx.max()
    assert 0 <= idx.min() and idx.max() < 12
    assert set(np.abs(np.diff(idx))) == {1}
  assert len(turns) > 3


def test_windows_are_deterministic_per_rng_and_random_across():
  a = [loopaug.loop_window(33, 17, np.random.default_rng(5))[0] for _ in range(2)]
  np.testing.assert_array_equal(a[0], a[1])
  starts = {loopaug.loop_window(33, 17, np.random.default_rng(s))[0][0] for s in range(30)}
  assert len(starts) > 5


def test_apply_loopaug_closes_the_loop_for_both_cameras():
  t = 9
  base_a = np.eye(4)
  base_b = np.eye(4)
  base_b[:3, 3] = [2.0, 0.0, 1.0]
  src_c2w = base_a @ get_trajectory("arc_left", t)
  tgt_c2w = base_b @ get_trajectory("pan_right", t)
  frames = np.arange(t)[:, None, None, None] * np.ones((t, 2, 2, 3), np.uint8)
  ex = loopaug.apply_loopaug(frames, frames + 100, src_c2w, tgt_c2w, 9,
                             np.random.default_rng(0))
  np.testing.assert_allclose(ex["source_poses"][0], np.eye(4), atol=1e-6)
  np.testing.assert_allclose(ex["source_poses"][-1], ex["source_poses"][0], atol=1e-6)
  np.testing.assert_allclose(ex["target_poses"][-1], ex["target_poses"][0], atol=1e-6)
  np.testing.assert_array_equal(ex["source"][0], ex["source"][-1])
  np.testing.assert_array_equal(ex["target"][ex["turn"]], frames[ex["indices"].max()] + 100)
  # Relative to the window's first source pose, in the world it is the same motion.
  ref = src_c2w[ex["indices"][0]]
  np.testing.assert_allclose(ref @ ex["target_poses"], tgt_c2w[ex["indices"]], atol=1e-5)


def test_loopaug_errors_say_what_is_wrong():
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="needs a clip of 9 frames, got 5"):
    loopaug.loop_window(5, 17, rng)
  with pytest.raises(ValueError, match="expected >= 3"):
    loopaug.loop_window(5, 2, rng)
  with pytest.raises(ValueError, match="turn_range"):
    loopaug.loop_window(9, 9, rng, turn_range=(0.8, 0.2))
  with pytest.raises(ValueError, match="target has 4 frames but source has 5"):
    loopaug.apply_loopaug(np.zeros((5, 1)), np.zeros((4, 1)), np.tile(np.eye(4), (5, 1, 1)),
                          np.tile(np.eye(4), (5, 1, 1)), 5, rng)
