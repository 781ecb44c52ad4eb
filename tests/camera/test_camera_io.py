"""Camera files: the ReCamMaster import in our convention, and round trips of every format."""

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from realcam_jax import camera as cam

FORMATS = [("a.json", None), ("a.npz", None), ("a.txt", None), ("a.json", "recammaster")]


def _rel(track):
  return cam.relative_to(track.poses, track.poses[0])


def _yaw_pitch_deg(pose):
  fwd = pose[:3, 2]
  return np.rad2deg(np.arctan2(fwd[0], fwd[2])), np.rad2deg(np.arcsin(-fwd[1]))


def test_recammaster_import_all_start_at_the_same_pose(recam_tracks):
  assert list(recam_tracks) == [f"cam{i:02d}" for i in range(1, 11)]
  for track in recam_tracks.values():
    assert track.poses.shape == (81, 4, 4)
    # Unreal (3390, 1380, 240) cm, x fwd / y right / z up -> ours (right, down, fwd) in metres.
    np.testing.assert_allclose(track.poses[0], cam.make_pose(np.eye(3), [13.8, -2.4, 33.9]))
    assert cam.is_rotation(track.poses[:, :3, :3], atol=1e-12).all()


def test_recammaster_rotations_in_our_convention(recam_tracks):
  yaw, pitch = {}, {}
  for name, track in recam_tracks.items():
    yaw[name], pitch[name] = _yaw_pitch_deg(_rel(track)[-1])
  last = 20.0 * 160 / 161
  assert yaw["cam01"] == pytest.approx(last, abs=1e-3)  # pan right: forward turns to +x
  assert yaw["cam02"] == pytest.approx(-last, abs=1e-3)
  assert pitch["cam03"] == pytest.approx(last / 2, abs=1e-3)  # tilt up: forward to -y
  assert pitch["cam04"] == pytest.approx(-last / 2, abs=1e-3)
  for name in ("cam01", "cam02"):
    assert pitch[name] == pytest.approx(0, abs=1e-6)
    assert np.abs(_rel(recam_tracks[name])[:, :3, 3]).max() < 1e-9  # pure rotation
  # Angles from rotation matrices over the whole path.
  angles = {n: np.rad2deg(cam.rotation_angle(_rel(t)[-1, :3, :3])) for n, t in recam_tracks.items()}
  expected = {"cam01": 19.876, "cam02": 19.876, "cam03": 9.938, "cam04": 9.938, "cam05": 0.0,
              "cam06": 0.0, "cam07": 13.952, "cam08": 13.952, "cam09": 29.822, "cam10": 29.822}
  for name, value in expected.items():
    assert angles[name] == pytest.approx(value, abs=2e-3), name


def test_recammaster_translations_in_our_convention(recam_tracks):
  end = {n: _rel(t)[-1, :3, 3] for n, t in recam_tracks.items()}
  d2, d1 = 2.0 * 160 / 161, 1.0 * 160 / 161
  np.testing.assert_allclose(end["cam05"], [0, 0, d2], atol=1e-4)  # zoom in: +z
  np.testing.assert_allclose(end["cam06"], [0, 0, -d2], atol=1e-4)
  np.testing.assert_allclose(end["cam07"], [0, -d1, 0], atol=1e-4)  # up is -y
  np.testing.assert_allclose(end["cam08"], [0, d1, 0], atol=1e-4)
  tan15 = np.tan(np.deg2rad(15.0))
  np.testing.assert_allclose(end["cam09"], [-d2, 0, d2 * tan15], atol=1e-4)  # arc left: -x
  np.testing.assert_allclose(end["cam10"], [d2, 0, d2 * tan15], atol=1e-4)
  # Translate-up/down and arcs keep looking at the point 4 m ahead of the start.
  for name in ("cam07", "cam08", "cam09", "cam10"):
    rel = _rel(recam_tracks[name])
    for pose in rel[::10]:
      to_target = np.array([0, 0, 4.0]) - pose[:3, 3]
      np.testing.assert_allclose(pose[:3, 2], to_target / np.linalg.norm(to_target), atol=5e-5)
  # cam07 rises and so tilts down: forward gets a +y (down) component.
  assert _rel(recam_tracks["cam07"])[-1, 1, 2] > 0.2


def test_unreal_to_opencv_on_a_hand_made_matrix():
  # Unreal camera yawed 90 deg: forward = +y_ue (right), right = -x_ue, up = +z_ue;
  # at (100, 200, 300) cm.
  m = np.array([[0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 1, 0], [100, 200, 300, 1.0]])
  pose = cam.unreal_to_opencv(m)
  np.testing.assert_allclose(pose[:3, 3], [2.0, -3.0, 1.0])  # (y_ue, -z_ue, x_ue) / 100
  np.testing.assert_allclose(pose[:3, 2], [1, 0, 0], atol=1e-12)  # looks along world +x (Unreal +y)
  np.testing.assert_allclose(pose[:3, 0], [0, 0, -1], atol=1e-12)  # its right is Unreal -x
  np.testing.assert_allclose(pose[:3, 1], [0, 1, 0], atol=1e-12)  # image down = world down
  np.testing.assert_allclose(cam.unreal_to_opencv(np.eye(4)), np.eye(4))
  rng = np.random.default_rng(0)
  poses = cam.make_pose(Rotation.random(5, random_state=1).as_matrix(), rng.normal(size=(5, 3)))
  np.testing.assert_allclose(cam.unreal_to_opencv(cam.opencv_to_unreal(poses)), poses, atol=1e-12)


@pytest.mark.parametrize("name", cam.list_trajectories())
@pytest.mark.parametrize("filename,fmt", FORMATS)
def test_every_preset_round_trips_through_every_format(tmp_path, name, filename, fmt):
  poses = cam.get_trajectory(name, 25)
  path = tmp_path / filename
  cam.write_cameras(path, poses, fmt)
  track = cam.read_camera(path)
  np.testing.assert_allclose(track.poses, poses, atol=1e-7)


@pytest.mark.parametrize("filename,fmt",
                         [("m.json", None), ("m.npz", None), ("m.json", "recammaster")])
def test_multi_camera_round_trip(tmp_path, recam_tracks, filename, fmt):
  path = tmp_path / filename
  cam.write_cameras(path, recam_tracks, fmt)
  assert cam.detect_format(path) == (fmt or ("npz" if filename.endswith("npz") else "json"))
  back = cam.read_cameras(path)
  assert list(back) == list(recam_tracks)
  for name in back:
    np.testing.assert_allclose(back[name].poses, recam_tracks[name].poses, atol=1e-7)


@pytest.mark.parametrize("filename", ["i.json", "i.npz", "i.txt"])
def test_intrinsics_and_timestamps_round_trip(tmp_path, filename):
  poses = cam.get_trajectory("random_polyline", 9, seed=1)
  K = cam.normalize_intrinsics(cam.intrinsics_from_focal(500.0, 510.0, 320.0, 180.0), 640, 360)
  track = cam.CameraTrack(poses, np.broadcast_to(K, (9, 3, 3)), np.arange(9) * 0.04)
  cam.write_cameras(tmp_path / filename, track)
  back = cam.read_camera(tmp_path / filename)
  np.testing.assert_allclose(back.poses, poses, atol=1e-9)
  np.testing.assert_allclose(back.intrinsics, track.intrinsics, atol=1e-9)
  np.testing.assert_allclose(back.timestamps, track.timestamps, atol=1e-6)


def test_realestate10k_rows_are_world_to_camera(tmp_path):
  w2c = cam.invert_pose(cam.look_at(np.array([1.0, -0.5, 2.0]), np.zeros(3)))
  row = [33366667, 0.5, 0.9, 0.5, 0.5, 0, 0] + list(w2c[:3].ravel())
  path = tmp_path / "scene.txt"
  path.write_text("https://www.youtube.com/watch?v=xyz\n" + " ".join(map(str, row)) + "\n")
  track = cam.read_camera(path)
  np.testing.assert_allclose(track.poses[0, :3, 3], [1.0, -0.5, 2.0], atol=1e-12)
  np.testing.assert_allclose(track.intrinsics[0], [[0.5, 0, 0.5], [0, 0.9, 0.5], [0, 0, 1]])
  assert track.timestamps[0] == pytest.approx(33.366667)
  K_px = cam.denormalize_intrinsics(track.intrinsics[0], 640, 360)
  np.testing.assert_allclose(K_px[0], [320, 0, 320])


def test_our_json_accepts_pixel_intrinsics_with_image_size(tmp_path):
  path = tmp_path / "px.json"
  K = [[320.0, 0, 320], [0, 320, 180], [0, 0, 1]]
  path.write_text(json.dumps({"poses": [np.eye(4).tolist()] * 2, "intrinsics": K,
                              "image_size": [640, 360]}))
  track = cam.read_camera(path)
  np.testing.assert_allclose(track.intrinsics[1], [[0.5, 0, 0.5], [0, 320 / 360, 0.5], [0, 0, 1]])


def test_detect_format(tmp_path, recam_path):
  assert cam.detect_format(recam_path) == "recammaster"
  assert cam.detect_format(tmp_path / "x.npz") == "npz"
  assert cam.detect_format(tmp_path / "x.txt") == "realestate10k"
  with pytest.raises(cam.CameraFileError, match="cannot tell the camera file format of .*x.csv"):
    cam.detect_format(tmp_path / "x.csv")
