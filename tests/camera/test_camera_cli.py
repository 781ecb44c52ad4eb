"""`realcam camera show/list/convert`, run in-process."""

import numpy as np

from realcam_jax import camera as cam
from realcam_jax.cli import main


def test_list_prints_every_preset_with_a_description(capsys):
  assert main(["camera", "list"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert [line.split()[0] for line in out] == cam.list_trajectories()
  assert any(line.startswith("pan_right") and "cam01" in line for line in out)


def test_show_preset_prints_summary_and_plots(tmp_path, capsys):
  png = tmp_path / "new_folder" / "p.png"        # the folder does not exist yet (README command)
  assert main(["camera", "show", "pan_right", "--frames", "33", "--plot", str(png)]) == 0
  out = capsys.readouterr().out
  assert "frames                 33" in out
  assert "rotation (last frame)  19.876 deg" in out
  assert "path length            0.0000 m" in out
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_loop_reports_closure(capsys):
  assert main(["camera", "show", "circle", "--param", "radius=1.0", "--frames", "40"]) == 0
  out = capsys.readouterr().out
  assert "start-end distance     0.0000 m" in out
  chords = 78 * np.sin(np.pi / 39)  # 39 chords of a unit circle
  assert f"path length            {chords:.4f} m" in out


def test_show_file_and_one_camera(recam_path, capsys):
  assert main(["camera", "show", recam_path, "--camera", "cam07"]) == 0
  out = capsys.readouterr().out
  assert out.startswith("cam07:")
  assert "rotation (last frame)  13.952 deg" in out
  assert "path length            0.9938 m" in out
  assert "(+0.0000, -0.9938, +0.0000)" in out
  assert main(["camera", "show", recam_path]) == 0
  assert capsys.readouterr().out.count("frames                 81") == 10


def test_bad_preset_name_exits_2_and_lists_names(capsys):
  assert main(["camera", "show", "pan_rigth"]) == 2
  err = capsys.readouterr().err
  assert "realcam camera: error:" in err and "'pan_rigth'" in err
  for name in cam.list_trajectories():
    assert name in err


def test_bad_inputs_exit_2(tmp_path, recam_path, capsys):
  assert main(["camera", "show", recam_path, "--camera", "cam42"]) == 2
  assert "camera cam42 is not in" in capsys.readouterr().err
  assert main(["camera", "show", "pan_right", "--param", "angle=3"]) == 2
  assert "has no parameter 'angle'" in capsys.readouterr().err
  bad = tmp_path / "bad.json"
  bad.write_text("")
  assert main(["camera", "show", str(bad)]) == 2
  assert f"camera file {bad} is empty" in capsys.readouterr().err
  assert main(["camera", "convert", recam_path, str(tmp_path / "all.txt")]) == 2
  assert "holds one camera" in capsys.readouterr().err


def test_convert_between_formats(tmp_path, recam_path, recam_tracks, capsys):
  npz, txt, back = tmp_path / "all.npz", tmp_path / "cam09.txt", tmp_path / "cam09.json"
  assert main(["camera", "convert", recam_path, str(npz)]) == 0
  assert main(["camera", "convert", str(npz), str(txt), "--camera", "cam09"]) == 0
  assert main(["camera", "convert", str(txt), str(back), "--to", "recammaster"]) == 0
  assert cam.detect_format(back) == "recammaster"
  track = cam.read_camera(back)
  np.testing.assert_allclose(track.poses, recam_tracks["cam09"].poses, atol=1e-7)
  assert main(["camera", "convert", "orbit", str(tmp_path / "orbit.json"), "--frames", "9",
               "--param", "degrees=360"]) == 0
  orbit = cam.read_camera(tmp_path / "orbit.json")
  np.testing.assert_allclose(orbit.poses, cam.get_trajectory("orbit", 9, degrees=360), atol=1e-12)
  assert "wrote" in capsys.readouterr().out
