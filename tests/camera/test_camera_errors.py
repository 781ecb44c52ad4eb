"""Bad camera files raise CameraFileError naming the file, frame, camera and what was expected."""

import json
import re

import numpy as np
import pytest

from realcam_jax import camera as cam
from realcam_jax.camera.external import _format_unreal


def _recam_dict(frames=8, cams=("cam01", "cam02", "cam03")):
  presets = dict(zip(cams, ("pan_right", "zoom_in", "arc_left")))
  raw = {c: cam.opencv_to_unreal(cam.get_trajectory(presets[c], frames)) for c in cams}
  return {f"frame{i}": {c: _format_unreal(raw[c][i]) for c in cams} for i in range(frames)}


def _write(tmp_path, data, name="camera_extrinsics.json"):
  path = tmp_path / name
  path.write_text(json.dumps(data) if not isinstance(data, str) else data)
  return str(path)


def _raises(path, *parts):
  with pytest.raises(cam.CameraFileError) as info:
    cam.read_cameras(path)
  msg = str(info.value)
  for part in (path,) + parts:
    assert part in msg, f"{part!r} not in {msg!r}"
  return msg


def test_recammaster_non_rotation_names_frame_camera_and_det(tmp_path):
  data = _recam_dict()
  data["frame5"]["cam02"] = "[1 0 0 0] [0 0.73 0 0] [0 0 1 0] [3390 1380 240 1] "
  msg = _raises(_write(tmp_path, data), "frame5", "cam02", "is not a rotation", "det=0.73")
  assert msg.startswith("camera pose frame5 of cam02 in ")


def test_recammaster_nan_and_inf(tmp_path):
  for bad in ("nan", "inf"):
    data = _recam_dict()
    data["frame3"]["cam01"] = f"[1 0 0 0] [0 1 0 0] [0 0 1 0] [{bad} 1380 240 1] "
    _raises(_write(tmp_path, data), "frame3", "cam01", "NaN or inf")


def test_recammaster_missing_frame(tmp_path):
  data = _recam_dict()
  del data["frame4"]
  _raises(_write(tmp_path, data), "frame4 is missing", "without gaps")


def test_recammaster_missing_and_extra_camera(tmp_path):
  data = _recam_dict()
  del data["frame6"]["cam03"]
  _raises(_write(tmp_path, data), "camera cam03 is missing from frame6", "it is in frame0")
  data = _recam_dict()
  data["frame2"]["cam09"] = data["frame2"]["cam01"]
  _raises(_write(tmp_path, data), "camera cam09 is in frame2 but missing from frame0")


@pytest.mark.parametrize("text", ["[1 0 0] [0 1 0] [0 0 1]", "[1 0 0 0] [0 1 0 0] [0 0 1 0]",
                                  "[1 0 0 0] [0 1 0 0] [0 0 1 0] [a b c 1]", 17])
def test_recammaster_wrong_matrix_string(tmp_path, text):
  data = _recam_dict()
  data["frame1"]["cam02"] = text
  _raises(_write(tmp_path, data), "frame1", "cam02", "expected a string of 4 bracketed rows")


def test_recammaster_translation_in_the_wrong_place(tmp_path):
  data = _recam_dict()
  data["frame2"]["cam01"] = "[1 0 0 3390] [0 1 0 1380] [0 0 1 240] [0 0 0 1] "
  _raises(_write(tmp_path, data), "frame2", "cam01", "last column to be [0, 0, 0, 1]")


@pytest.mark.parametrize("name", ["empty.json", "empty.txt", "empty.npz"])
def test_empty_files(tmp_path, name):
  _raises(_write(tmp_path, "", name), "camera file", "is empty")
  if name != "empty.npz":
    _raises(_write(tmp_path, "  \n\n", name), "is empty")


def test_blank_and_malformed_json(tmp_path):
  _raises(_write(tmp_path, "{}", "blank.json"), 'expected an object with "poses"')
  _raises(_write(tmp_path, "{\"frame0\": ", "bad.json"), "is not valid JSON")
  _raises(_write(tmp_path, {"frame0": {}}, "nocams.json"), "frame0 has no cameras")
  _raises(_write(tmp_path, {"frame0": {}, "poses": 1}, "mixed.json"),
          "expected shape [T, 4, 4], got ()")


def test_our_json_shape_nan_rotation_and_convention(tmp_path):
  poses = cam.get_trajectory("orbit", 4)
  _raises(_write(tmp_path, {"poses": poses[:, :3].tolist()}, "p.json"),
          "of camera", "expected shape [T, 4, 4], got (4, 3, 4)")
  bad = poses.copy()
  bad[2, 0, 1] = np.inf
  _raises(_write(tmp_path, {"name": "left", "poses": bad.tolist()}, "p.json"),
          "frame 2 of left", "NaN or inf")
  bad = poses.copy()
  bad[1, :3, 0] *= -1
  _raises(_write(tmp_path, {"cameras": {"c7": {"poses": bad.tolist()}}}, "p.json"),
          "camera pose frame 1 of c7", "is not a rotation: det=-1")
  _raises(_write(tmp_path, {"convention": "OpenGL", "poses": poses.tolist()}, "p.json"),
          "declares convention 'OpenGL'", "expected 'camera-to-world")
  _raises(_write(tmp_path, {"poses": poses.tolist(), "intrinsics": [[1, 0], [0, 1]]}, "p.json"),
          "intrinsics of camera", "expected shape [3, 3] or [4, 3, 3]")


def test_realestate10k_bad_rows(tmp_path):
  good = "0 0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0"
  _raises(_write(tmp_path, f"url\n{good}\n0 0.5 0.9 0.5 0.5 0 0 1 0 0\n", "r.txt"),
          "line 3 (frame 1)", "expected 19 numbers")
  _raises(_write(tmp_path, f"url\n{good}\n{good.replace('0 0 1 0', '0 0 nan 0', 1)}\n", "r.txt"),
          "frame 1", "NaN or inf")
  _raises(_write(tmp_path, "url\n", "r.txt"), "no pose rows")
  scaled = "0 0.5 0.9 0.5 0.5 0 0 2 0 0 0 0 1 0 0 0 0 1 0"
  _raises(_write(tmp_path, f"url\n{scaled}\n", "r.txt"), "frame 0 of camera", "det=2")


def test_npz_and_missing_file_and_camera(tmp_path, recam_path):
  path = tmp_path / "x.npz"
  np.savez(path, rotations=np.zeros((2, 3, 3)))
  _raises(str(path), "expected an array 'poses'", "rotations")
  _raises(str(tmp_path / "nope.json"), "does not exist")
  with pytest.raises(cam.CameraFileError, match=re.escape(f"camera cam11 is not in {recam_path}: "
                                                          "expected one of cam01, cam02")):
    cam.read_camera(recam_path, "cam11")
  with pytest.raises(cam.CameraFileError, match="holds 10 cameras .*choose one"):
    cam.read_camera(recam_path)


def test_writing_several_cameras_to_realestate10k_is_refused(tmp_path, recam_tracks):
  with pytest.raises(cam.CameraFileError, match="holds one camera, got 10"):
    cam.write_cameras(tmp_path / "x.txt", recam_tracks)
  with pytest.raises(cam.CameraFileError, match="cannot tell which camera format"):
    cam.write_cameras(tmp_path / "x.csv", recam_tracks)
