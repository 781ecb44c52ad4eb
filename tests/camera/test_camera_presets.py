"""Trajectory presets: identity start, valid rotations, ReCamMaster magnitudes, loops."""

import numpy as np
import pytest

from realcam_jax import camera as cam

RECAM_NAMES = ["pan_right", "pan_left", "tilt_up", "tilt_down", "zoom_in", "zoom_out",
               "translate_up", "translate_down", "arc_left", "arc_right"]


def test_list_has_recammaster_and_extra_paths():
  names = cam.list_trajectories()
  assert names[1:11] == RECAM_NAMES
  for extra in ("orbit", "dolly", "random_polyline", "out_and_back", "circle"):
    assert extra in names
  assert all(cam.describe_trajectory(n) for n in names)


@pytest.mark.parametrize("name", cam.list_trajectories())
@pytest.mark.parametrize("frames", [1, 2, 17, 81])
def test_every_preset_starts_at_identity_with_valid_rotations(name, frames):
  poses = cam.get_trajectory(name, frames)
  assert poses.shape == (frames, 4, 4)
  np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
  assert cam.is_rotation(poses[:, :3, :3], atol=1e-9).all()
  np.testing.assert_allclose(poses[:, 3], np.broadcast_to([0, 0, 0, 1.0], (frames, 4)))


@pytest.mark.parametrize("index,name", list(enumerate(RECAM_NAMES, start=1)))
def test_recammaster_presets_equal_the_reference_file_at_81_frames(index, name, recam_tracks):
  track = recam_tracks[f"cam{index:02d}"]
  ref = cam.relative_to(track.poses, track.poses[0])
  # The file rounds translations to 0.01 cm (1e-4 m) and rotations to 6 digits.
  np.testing.assert_allclose(cam.get_trajectory(name, 81), ref, atol=1e-4)


def test_magnitudes_do_not_depend_on_frame_count():
  for frames in (9, 49, 177):
    pan = cam.get_trajectory("pan_right", frames)
    assert abs(np.rad2deg(cam.rotation_angle(pan[-1, :3, :3])) - 20.0 * 160 / 161) < 1e-9
    zoom = cam.get_trajectory("zoom_in", frames)
    np.testing.assert_allclose(zoom[-1, :3, 3], [0, 0, 2.0 * 160 / 161], atol=1e-12)


def test_parameters_change_the_motion():
  pan = cam.get_trajectory("pan_right", 5, degrees=45.0)
  assert abs(np.rad2deg(cam.rotation_angle(pan[-1, :3, :3])) - 45.0) < 1e-9
  dolly = cam.get_trajectory("dolly", 11, distance=3.0, direction=(1.0, 0.0, 0.0))
  np.testing.assert_allclose(dolly[-1, :3, 3], [3.0, 0.0, 0.0], atol=1e-12)
  np.testing.assert_allclose(dolly[:, :3, :3], np.broadcast_to(np.eye(3), (11, 3, 3)))


@pytest.mark.parametrize("name,params", [
    ("out_and_back", {}), ("out_and_back", {"base": "arc_left"}),
    ("out_and_back", {"base": "random_polyline", "seed": 4}),
    ("circle", {}), ("circle", {"heading": "tangent", "radius": 1.5}),
    ("orbit", {"degrees": 360.0}), ("orbit", {"degrees": -360.0, "radius": 2.0}),
])
@pytest.mark.parametrize("frames", [16, 33])
def test_loops_end_where_they_start(name, params, frames):
  poses = cam.get_trajectory(name, frames, **params)
  np.testing.assert_allclose(poses[-1], poses[0], atol=1e-9)
  # ...and they really go somewhere in between.
  s = poses[frames // 2]
  assert np.abs(s - np.eye(4)).max() > 0.05


def test_orbit_keeps_looking_at_its_centre():
  poses = cam.get_trajectory("orbit", 13, degrees=120.0, radius=3.0)
  centre = np.array([0.0, 0.0, 3.0])
  for p in poses:
    to_centre = centre - p[:3, 3]
    np.testing.assert_allclose(p[:3, 2], to_centre / np.linalg.norm(to_centre), atol=1e-9)
    assert abs(np.linalg.norm(to_centre) - 3.0) < 1e-9


def test_random_polyline_is_seeded_and_has_the_requested_speed():
  a = cam.get_trajectory("random_polyline", 60, seed=7)
  np.testing.assert_array_equal(a, cam.get_trajectory("random_polyline", 60, seed=7))
  assert np.abs(a - cam.get_trajectory("random_polyline", 60, seed=8)).max() > 0.1
  steps = np.linalg.norm(np.diff(a[:, :3, 3], axis=0), axis=-1)
  assert steps.std() / steps.mean() < 0.03  # constant speed
  v = cam.get_trajectory("random_polyline", 60, seed=7, speed="variable")
  vsteps = np.linalg.norm(np.diff(v[:, :3, 3], axis=0), axis=-1)
  assert vsteps.max() / vsteps.min() > 1.5
  np.testing.assert_allclose(v[-1], a[-1], atol=1e-9)  # same path, different timing


def test_unknown_preset_and_parameter_errors_list_the_choices():
  with pytest.raises(cam.CameraFileError, match="unknown camera trajectory 'pan_rigth'.*pan_right"):
    cam.get_trajectory("pan_rigth", 10)
  with pytest.raises(cam.CameraFileError, match="has no parameter 'angle'.*degrees"):
    cam.get_trajectory("pan_right", 10, angle=3)
  with pytest.raises(cam.CameraFileError, match="num_frames must be >= 1"):
    cam.get_trajectory("pan_right", 0)
