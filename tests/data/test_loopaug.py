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


def test_forward_source_variant_keeps_the_source_running_while_the_target_returns():
  t, length = 12, 9
  src_c2w = get_trajectory("arc_left", t)
  tgt_c2w = np.eye(4) @ get_trajectory("pan_right", t)
  frames = np.arange(t)[:, None, None, None] * np.ones((t, 2, 2, 3), np.uint8)
  for seed in range(5):
    ex = loopaug.apply_loopaug(frames, frames + 100, src_c2w, tgt_c2w, length,
                               np.random.default_rng(seed), variant="forward_source")
    a = ex["indices"][0]
    # The source never repeats: consecutive new frames, its camera moving on.
    np.testing.assert_array_equal(ex["source_indices"], a + np.arange(length))
    np.testing.assert_array_equal(ex["source"][:, 0, 0, 0], a + np.arange(length))
    assert not np.allclose(ex["source_poses"][-1], ex["source_poses"][0], atol=1e-3)
    # The target plays the palindrome: back at its first pose and image at the end.
    np.testing.assert_array_equal(ex["target"][-1], ex["target"][0])
    np.testing.assert_allclose(ex["target_poses"][-1], ex["target_poses"][0], atol=1e-6)
    np.testing.assert_allclose(src_c2w[a] @ ex["target_poses"], tgt_c2w[ex["indices"]],
                               atol=1e-5)
  # The palindrome variant (default) repeats the source; the two agree on the target.
  pal = loopaug.apply_loopaug(frames, frames + 100, src_c2w, tgt_c2w, length,
                              np.random.default_rng(0))
  np.testing.assert_array_equal(pal["source_indices"], pal["indices"])
  with pytest.raises(ValueError, match="variant 'mirror'"):
    loopaug.apply_loopaug(frames, frames, src_c2w, tgt_c2w, length,
                          np.random.default_rng(0), variant="mirror")
  with pytest.raises(ValueError, match="needs a clip of 9 frames, got 8"):
    loopaug.apply_loopaug(frames[:8], frames[:8], src_c2w[:8], tgt_c2w[:8], length,
                          np.random.default_rng(0), variant="forward_source")


def test_pipeline_selects_the_variant_by_config():
  import ml_collections
  from realcam_jax.data import pipeline
  cfg = ml_collections.ConfigDict(dict(
      train_frames=5, loopaug_fraction=1.0, loopaug_turn=(0.5, 0.5), source_key="source_rgb",
      target_key="target_rgb", text_len=1, text_dim=2))
  assert pipeline.make_transform(cfg, "train").loopaug_variant == "palindrome"
  cfg.loopaug_variant = "forward_source"
  tf = pipeline.make_transform(cfg, "train")
  t = 9
  frames = (np.arange(t)[:, None, None, None] * np.ones((t, 2, 2, 3))).astype(np.uint8)
  rec = dict(source_rgb=frames, target_rgb=np.ones((1, t, 2, 2, 3), np.uint8),
             source_c2w=get_trajectory("pan_left", t),
             target_c2w=get_trajectory("pan_right", t)[None], intrinsics=np.eye(3))
  ex = tf(rec, np.random.default_rng(0))
  src = np.round((ex["source"][:, 0, 0, 0] + 1) * 127.5)
  np.testing.assert_array_equal(np.diff(src), 1.0)      # forward, never repeating
  cfg.loopaug_variant = "mirror"
  with pytest.raises(ValueError, match="data.loopaug_variant='mirror'"):
    pipeline.make_transform(cfg, "train")
