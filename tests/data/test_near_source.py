"""Near-source target cameras (issue 19): where they start, how far they move, the mix."""

import numpy as np
import pytest

from realcam_jax.data import near_source, rig, synthetic
from realcam_jax.data.rig import NEAR_RANGES, RigError

T = 9


def _angle_deg(r0, r1):
  c = (np.trace(r0.T @ r1) - 1.0) / 2.0
  return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def _rigs(families, n=24, **cfg):
  out = []
  for seed in range(n):
    scene = synthetic.make_scene(seed)
    out.append(rig.sample_rig(scene, seed, T, 32, 32, 1, near_fraction=1.0,
                              near_trajectories=families, **cfg))
  return out


def test_eased_progress_matches_the_formula_by_hand():
  # a = 2 at s = 0.5: (1 - e^-1) / (1 - e^-2) = 0.632121 / 0.864665.
  np.testing.assert_allclose(near_source.eased_progress(np.array([0.0, 0.5, 1.0]), 2.0),
                             [0.0, 0.7310586, 1.0], rtol=1e-6)
  with pytest.raises(ValueError, match="rate"):
    near_source.eased_progress(np.array([0.5]), 0.0)


def test_near_targets_start_at_the_source_within_the_jitter():
  max_deg, max_m = 3.0, 0.15
  at_source = 0
  for r in _rigs(rig.NEAR_PATHS, near_start_jitter=(max_deg, max_m)):
    src0, tgt0 = r["source_c2w"][0], r["target_c2w"][0, 0]
    assert r["target_trajectories"][0].startswith("near:")
    angle = _angle_deg(src0[:3, :3], tgt0[:3, :3])
    shift = np.linalg.norm(src0[:3, 3] - tgt0[:3, 3])
    assert angle <= np.sqrt(2) * max_deg + 1e-6 and shift <= max_m + 1e-9
    at_source += angle < 1e-5 and shift < 1e-9
  assert 0 < at_source < 24      # about half start exactly at the source


def test_follow_source_is_the_source_path_exactly():
  for r in _rigs(("follow_source",), n=4):
    np.testing.assert_array_equal(r["target_c2w"][0], r["source_c2w"])
    np.testing.assert_array_equal(r["view_change"], [[0.0, 0.0]])


def test_pans_and_tilts_turn_by_multicamvideo_magnitudes_and_keep_the_centre():
  for family, key in (("pan", "pan_deg"), ("tilt", "tilt_deg")):
    lo, hi = NEAR_RANGES[key]
    for r in _rigs((family,), n=8, near_start_jitter=(0.0, 0.0)):
      path = r["target_c2w"][0]
      np.testing.assert_allclose(path[:, :3, 3], path[:1, :3, 3].repeat(T, 0), atol=1e-9)
      assert lo - 1e-6 <= _angle_deg(path[0, :3, :3], path[-1, :3, :3]) <= hi + 1e-6


def test_translations_move_a_quarter_to_one_subject_distance():
  lo, hi = NEAR_RANGES["translate"]
  for seed, r in enumerate(_rigs(("translate",), n=12, near_start_jitter=(0.0, 0.0))):
    path = r["target_c2w"][0]
    moved = np.linalg.norm(path[-1, :3, 3] - path[0, :3, 3])
    # The subject distance the rig used: horizontal distance to the look-at point.
    dist = r["source_distance"] * np.cos(np.arcsin(np.clip(
        -r["source_c2w"][0, 2, 2], -1, 1)))
    assert lo * dist * 0.99 <= moved <= hi * dist * 1.01, (seed, moved, dist)


def test_the_mix_draws_both_kinds_and_far_targets_keep_their_range():
  names = []
  for seed in range(40):
    scene = synthetic.make_scene(seed)
    r = rig.sample_rig(scene, seed, T, 32, 32, 1, near_fraction=0.5)
    names.append(r["target_trajectories"][0])
    if not names[-1].startswith("near:"):
      assert r["view_change"][0, 0] > 10.0     # 15-75 deg of azimuth change (+ pitch)
  near = sum(n.startswith("near:") for n in names)
  assert 8 < near < 32
  assert all(n in rig.trajectory_names() for n in names)


@pytest.mark.parametrize("cfg, match", [
    (dict(near_fraction=1.5), "near_fraction"),
    (dict(near_trajectories=("pan", "zoom_in")), "near_trajectories"),
    (dict(near_start_jitter=(1.0,)), "near_start_jitter"),
    (dict(near_start_jitter=(-1.0, 0.1)), "near_start_jitter"),
])
def test_bad_near_config_raises_clear_errors(cfg, match):
  with pytest.raises(RigError, match=match):
    rig.validate_rig_config(cfg)
