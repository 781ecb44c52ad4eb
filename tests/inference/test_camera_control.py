"""Live camera control: blending, commands, presets, paths, short trajectories."""

import json
import os

import numpy as np
import pytest

from realcam_jax import camera as cam
from realcam_jax.inference import camera_control as cc
from realcam_jax.inference.camera_control import CameraCommandError, CameraController


def _yaw(poses):
  return np.array([cc.pose_angles(p)[0] for p in poses])


def _step_angles(poses):
  rel = cam.invert_pose(poses[:-1]) @ poses[1:]
  return np.rad2deg(cam.rotation_angle(rel[:, :3, :3]))


def test_change_mid_stream_affects_only_later_frames_and_reaches_target():
  c = CameraController(transition_frames=8)
  c.apply_command("preset pan_right frames=40")
  c.take(12)
  before = c.poses_for(0, 60)
  c.apply_command("tilt 6")
  after = c.poses_for(0, 60)
  np.testing.assert_array_equal(after[:12], before[:12])  # generated frames: bit for bit
  assert not np.allclose(after[12], before[12])  # the first new frame already moves
  tilt = cam.make_pose(cam.rotation_x(np.deg2rad(6.0)), np.zeros(3))
  # Frame 12 + D - 1 = 19 on is exactly the new path: the preset with a 6 deg tilt offset.
  np.testing.assert_allclose(after[19:], before[19:] @ tilt, atol=1e-12)
  assert c.describe(19)["in_transition"] is False and c.describe(15)["in_transition"]


def test_hold_pose_change_reaches_commanded_pose_after_transition_frames():
  c = CameraController(transition_frames=6)
  c.take(5)
  c.apply_command("pan 12")
  yaw = _yaw(c.poses_for(0, 20))
  np.testing.assert_allclose(yaw[:5], 0.0, atol=1e-12)
  assert 0 < yaw[5] < yaw[6] < yaw[9] < 12.0
  np.testing.assert_allclose(yaw[10:], 12.0, atol=1e-9)  # frame 5 + 6 - 1


def test_blending_is_continuous_and_poses_stay_rotations():
  c = CameraController(transition_frames=8)
  for frame, command in [(3, "pan 20"), (6, "dolly 0.5"), (9, "tilt -9"), (12, "orbit 30"),
                         (20, "preset arc_right frames=30"), (30, "roll 10"), (35, "hold"),
                         (50, "truck -0.3"), (52, "pedestal 0.2"), (60, "reset")]:
    c.advance_to(frame)
    c.apply_command(command)
  poses = c.poses_for(0, 90)
  assert cam.is_rotation(poses[:, :3, :3], atol=1e-9).all()
  np.testing.assert_array_equal(poses[:, 3], np.tile([0.0, 0.0, 0.0, 1.0], (90, 1)))
  np.testing.assert_allclose(poses[-1], np.eye(4), atol=1e-12)  # reset reached
  assert _step_angles(poses).max() < 8.0  # no jumps (the largest command is 30 deg over 8)


def test_per_frame_step_is_bounded_by_smoothstep_slope():
  for d in (4, 8, 16):
    c = CameraController(transition_frames=d)
    c.take(3)
    c.apply_command("pan 24")
    c.apply_command("dolly 0.8")  # same frame: both add up
    poses = c.poses_for(0, 40)
    assert _step_angles(poses).max() <= 1.5 * 24.0 / d + 1e-9
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=-1)
    assert steps.max() <= 1.5 * 0.8 / d + 1e-9
    np.testing.assert_allclose(_yaw(poses[3 + d - 1:]), 24.0, atol=1e-9)


@pytest.mark.parametrize("text", [
    "", "   ", "pan", "pan five", "pan 5 furlongs", "dolly 3 deg", "fly 3", "pan 5 6",
    "preset", "preset nope", "preset orbit degrees", "preset orbit bogus=1",
    "preset orbit radius=abc", "preset pan_right frames=0", "dolly 1e9", "pan 400", "pan nan",
    "reset now", "hold 3"])
def test_bad_commands_raise_and_leave_state_unchanged(text):
  c = CameraController(transition_frames=4)
  c.apply_command("preset orbit frames=30")
  c.take(7)
  c.apply_command("pan 5")
  state = (c.poses_for(0, 50), c.describe(), c.frame, len(c.notices))
  with pytest.raises(CameraCommandError) as e:
    c.apply_command(text)
  assert "accepted commands" in str(e.value) or "preset" in str(e.value)
  assert isinstance(e.value, ValueError)
  np.testing.assert_array_equal(c.poses_for(0, 50), state[0])
  assert c.describe() == state[1] and c.frame == state[2] and len(c.notices) == state[3]


def test_bad_api_input_raises_clear_errors():
  c = CameraController()
  with pytest.raises(CameraCommandError, match="not a rotation"):
    c.set_pose(np.diag([1.0, 1.0, 2.0, 1.0]))
  with pytest.raises(CameraCommandError, match=r"\[T, 4, 4\]"):
    c.set_path(np.zeros((5, 3, 3)))
  with pytest.raises(CameraCommandError, match="neither a camera file nor a preset"):
    c.set_trajectory("pan_rigth")
  with pytest.raises(CameraCommandError, match="at_frame"):
    c.set_pose(np.eye(4), at_frame=-1)
  np.testing.assert_array_equal(c.poses_for(0, 3), np.broadcast_to(np.eye(4), (3, 4, 4)))


def test_determinism_and_query_independence():
  def run():
    c = CameraController(transition_frames=5)
    for f, cmd in [(0, "preset random_polyline seed=3 frames=50"), (10, "pan -7"),
                   (14, "orbit 15"), (30, "hold"), (31, "tilt 2")]:
      c.advance_to(f)
      c.apply_command(cmd)
    return c
  a, b = run(), run()
  full = a.poses_for(0, 70)
  np.testing.assert_array_equal(full, b.poses_for(0, 70))
  pieces = np.concatenate([b.poses_for(s, 7) for s in range(0, 70, 7)])
  np.testing.assert_array_equal(full, pieces)
  np.testing.assert_array_equal(full[33], a.pose_at(33))


def test_preset_from_frame_zero_equals_get_trajectory():
  c = CameraController(num_frames_hint=49)
  c.set_preset("arc_left")
  np.testing.assert_allclose(c.poses_for(0, 49), cam.get_trajectory("arc_left", 49), atol=1e-12)


def test_preset_mid_stream_is_composed_with_the_start_pose():
  c = CameraController(transition_frames=6)
  c.apply_command("pan 10")
  c.apply_command("dolly 0.3")  # frame 0: applies at once
  c.take(9)
  start = c.commanded_pose()
  c.apply_command("preset orbit degrees=60 radius=2 frames=25")
  traj = cam.get_trajectory("orbit", 25, degrees=60.0, radius=2.0)
  poses = c.poses_for(9, 40)
  np.testing.assert_allclose(poses[5:25], start @ traj[5:], atol=1e-12)  # after the blend
  np.testing.assert_allclose(poses[25:], np.broadcast_to(start @ traj[-1], (15, 4, 4)),
                             atol=1e-12)  # held after the end
  np.testing.assert_allclose(c.describe(40)["target"]["position"], (start @ traj[-1])[:3, 3])


def test_short_paths_hold_the_last_pose_and_say_so(tmp_path):
  c = CameraController(num_frames_hint=60, transition_frames=4)
  path = cam.get_trajectory("zoom_in", 20)
  file = tmp_path / "short.json"
  cam.write_cameras(str(file), path)
  c.set_trajectory(str(file))
  poses = c.poses_for(0, 60)
  np.testing.assert_allclose(poses[:20], path, atol=1e-12)
  np.testing.assert_allclose(poses[20:], np.broadcast_to(path[-1], (40, 4, 4)), atol=1e-12)
  assert any("ends at frame 19" in n and "holding its last pose" in n for n in c.notices)
  d = c.describe(30)
  assert d["path_end_frame"] == 19 and d["holding_last_pose"] and d["mode"] == "path"
  assert not c.describe(10)["holding_last_pose"]
  # Presets follow the same rule.
  c2 = CameraController(num_frames_hint=60)
  c2.apply_command("preset pan_right frames=30")
  assert c2.describe(45)["holding_last_pose"] and "ends at frame 29" in c2.notices[-1]
  np.testing.assert_allclose(c2.pose_at(59), c2.pose_at(29), atol=1e-12)


def test_absolute_and_anchored_paths():
  path = cam.make_pose(np.eye(3), np.array([[1.0, 0, 0], [1.0, 0, 0.5], [1.0, 0, 1.0]]))
  c = CameraController()
  c.apply_command("truck 2")
  c.set_path(path, anchor="absolute")
  np.testing.assert_allclose(c.poses_for(0, 3), path)
  c = CameraController()
  c.apply_command("truck 2")
  c.set_path(path)  # anchored at the commanded pose (x = 2)
  np.testing.assert_allclose(c.poses_for(0, 3)[:, :3, 3], [[2, 0, 0], [2, 0, 0.5], [2, 0, 1]])


def test_relative_moves_use_camera_axes():
  c = CameraController(orbit_distance=2.0)

  def after(cmd):
    c.apply_command("reset")
    c.apply_command("pan 90")
    c.apply_command(cmd)
    return c.pose_at(0)
  # After panning 90 deg right the camera looks along world +x.
  np.testing.assert_allclose(after("dolly 0.5")[:3, 3], [0.5, 0, 0], atol=1e-12)
  np.testing.assert_allclose(after("truck 50 cm")[:3, 3], [0, 0, -0.5], atol=1e-12)
  np.testing.assert_allclose(after("pedestal 0.5")[:3, 3], [0, -0.5, 0], atol=1e-12)
  c.apply_command("reset")
  c.apply_command("tilt 10")
  assert c.pose_at(0)[1, 2] < 0  # looking up = towards -y
  c.apply_command("reset")
  c.apply_command("roll 0.1 rad")
  np.testing.assert_allclose(cc.pose_angles(c.pose_at(0))[2], np.rad2deg(0.1), atol=1e-9)
  # Orbit: the point 2 m ahead stays on the optical axis; positive = to the right.
  c.apply_command("reset")
  c.apply_command("orbit 30")
  p = c.pose_at(0)
  to_point = np.array([0.0, 0.0, 2.0]) - p[:3, 3]
  np.testing.assert_allclose(p[:3, 2], to_point / np.linalg.norm(to_point), atol=1e-12)
  np.testing.assert_allclose(np.linalg.norm(to_point), 2.0, atol=1e-12)
  assert p[0, 3] > 0


def test_hold_eases_to_a_stop():
  c = CameraController(transition_frames=10)
  c.apply_command("preset dolly distance=4 ease=false frames=41")  # 0.1 m per frame
  c.take(15)
  c.apply_command("hold")
  z = c.poses_for(0, 40)[:, 2, 3]
  v = np.diff(z)
  np.testing.assert_allclose(v[:14], 0.1, atol=1e-12)  # untouched before frame 15
  assert np.all(np.diff(v[13:26]) <= 1e-12)  # decelerates, never backwards
  assert np.all(v >= -1e-12)
  np.testing.assert_allclose(v[24:], 0.0, atol=1e-12)  # stopped from frame 15 + 10 - 1
  np.testing.assert_allclose(z[-1], z[14] + 0.1 * 10 / 2, atol=1e-9)  # 14 + D/2
  assert c.describe(30)["mode"] == "hold"


def test_changes_never_rewrite_generated_frames_and_replace_scheduled_ones():
  c = CameraController(transition_frames=4)
  c.take(10)
  ref = c.poses_for(0, 10)
  c.apply_command("pan 30", at_frame=3)  # in the past: moved to frame 10
  np.testing.assert_array_equal(c.poses_for(0, 10), ref)
  assert c.pose_at(10)[0, 2] > 0
  c.set_preset("pan_left", at_frame=30, num_frames=10)
  c.apply_command("tilt 5", at_frame=20)  # replaces the preset scheduled at 30
  assert c.describe(40)["label"] == "tilt 5 deg"
  np.testing.assert_allclose(_yaw([c.pose_at(45)]), 30.0, atol=1e-9)


def test_describe_preview_and_key_bindings_are_json_ready():
  c = CameraController(num_frames_hint=100)
  c.apply_command("preset arc_left")
  c.take(4)
  c.apply_command(cc.command_for_key("ArrowLeft"))
  d = c.describe()
  json.dumps(d)
  assert d["mode"] == "preset" and d["last_command"] == "pan -5 deg" and d["frame"] == 4
  assert set(d["pose"]) == {"position", "yaw_deg", "pitch_deg", "roll_deg"}
  prev = c.path_preview(count=30)
  json.dumps(prev)
  assert len(prev["positions"]) == 30 and prev["frames"][0] == 4
  np.testing.assert_allclose(prev["positions"][0], c.pose_at(4)[:3, 3])
  for key, cmd in cc.KEY_BINDINGS.items():
    assert cc.parse_command(cmd).verb
    assert cc.command_for_key(key) == cmd
  assert cc.command_for_key("W") == "dolly 0.1" and cc.command_for_key("F13") is None


def test_parse_command_units_and_aliases():
  p = cc.parse_command
  assert p("PAN -5 deg").value == -5.0 and p("yaw 5°").verb == "pan"
  np.testing.assert_allclose(p("tilt 0.1rad").value, np.rad2deg(0.1))
  assert p("pitch 2").verb == "tilt"
  assert p("dolly 20 cm").value == pytest.approx(0.2) and p("truck 5mm").value == 0.005
  cmd = p("preset orbit degrees=45 frames=60 direction=0,0,1")
  assert cmd.name == "orbit" and cmd.params == {"degrees": 45, "frames": 60,
                                                "direction": (0, 0, 1)}
  assert p("hold").to_dict()["verb"] == "hold"


def test_pose_angles_round_trip():
  rng = np.random.default_rng(0)
  for yaw, pitch, roll in rng.uniform([-170, -80, -170], [170, 80, 170], (20, 3)):
    pose = cc.pose_from_angles([1, 2, 3], yaw, pitch, roll)
    np.testing.assert_allclose(cc.pose_angles(pose), (yaw, pitch, roll), atol=1e-9)
  assert cc.pose_angles(cam.make_pose(cam.rotation_y(np.deg2rad(5)), np.zeros(3)))[0] == (
      pytest.approx(5.0))


RECAM_FILE = os.path.join(os.path.dirname(__file__), "..", "camera", "data",
                          "recammaster_camera_extrinsics.json")


@pytest.mark.skipif(not os.path.exists(RECAM_FILE), reason="ReCamMaster camera file not present")
def test_trajectory_from_a_camera_file_matches_the_preset():
  c = CameraController(num_frames_hint=81)
  with pytest.raises(CameraCommandError, match="choose one"):
    c.set_trajectory(RECAM_FILE)
  c.set_trajectory(RECAM_FILE, camera="cam01")
  np.testing.assert_allclose(c.poses_for(0, 81), cam.get_trajectory("pan_right", 81), atol=1e-4)
  c = CameraController(num_frames_hint=41)
  c.set_trajectory(RECAM_FILE, camera="cam05", num_frames=41)  # resampled to the video
  np.testing.assert_allclose(c.poses_for(0, 41), cam.get_trajectory("zoom_in", 41), atol=1e-4)
  assert not c.notices
  with pytest.raises(CameraCommandError, match="no preset parameters"):
    c.set_trajectory(RECAM_FILE, camera="cam05", degrees=3)


def test_relative_moves_on_a_short_path_do_not_repeat_the_notice():
  c = CameraController(num_frames_hint=100)
  c.apply_command("preset pan_left frames=20")
  for _ in range(5):
    c.apply_command("pan 1")
  assert len(c.notices) == 1
  assert c.describe()["mode"] == "preset" and c.describe(50)["holding_last_pose"]
