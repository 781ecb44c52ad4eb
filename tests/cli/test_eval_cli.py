"""`realcam eval` end to end on the tiny configs (random weights) and its bad-input errors."""

import json
import math

import pytest

from realcam_jax.cli import main

TINY = ["--config", "student:tiny", "--config.teacher.sampler.steps=2"]


def test_eval_all_systems_writes_results_and_plots(tmp_path, capsys):
  # student:tiny: short = 21 frames (6 latent), long = loop = 45 frames (12 latent), so
  # each model compiles two shapes.
  out = tmp_path / "ev"
  rc = main(["eval", *TINY, "--num-scenes", "1", "--lengths", "short,long,loop",
             "--out", str(out)])
  assert rc == 0
  cap = capsys.readouterr()
  assert "random weights: output is noise" in cap.err
  assert f"wrote {out}" in cap.out
  assert sorted(p.name for p in out.iterdir()) == [
      "frames_long.png", "frames_loop.png", "frames_short.png",
      "loop_closure.png", "psnr_per_frame_long.png", "psnr_per_frame_loop.png",
      "psnr_per_frame_short.png", "results.json", "results.md"]
  for png in out.glob("*.png"):
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  res = json.loads((out / "results.json").read_text())
  assert res["lengths"] == {"short": {"latent_frames": 6, "frames": 21},
                            "long": {"latent_frames": 12, "frames": 45},
                            "loop": {"latent_frames": 12, "frames": 45}}
  assert list(res["systems"]) == ["student", "teacher", "prefix", "copy_source"]
  assert res["systems"]["prefix"]["info"]["layout"] == "prefix"
  assert res["systems"]["teacher"]["info"]["steps"] == 2
  for system, per in res["results"].items():
    assert list(per) == ["short", "long", "loop"]
    for length, r in per.items():
      for key in ("psnr", "ssim", "psnr_static", "ssim_static", "flicker", "flicker_ratio"):
        assert isinstance(r[key], float) and math.isfinite(r[key]), (system, length, key)
      assert len(r["per_frame_psnr"]) == res["lengths"][length]["frames"]
    assert math.isfinite(per["loop"]["loop_mae"]) and per["loop"]["loop_mae"] > 0
  md = (out / "results.md").read_text()
  assert "## loop: 45 frames (12 latent)" in md
  for system in res["systems"]:
    # the systems table, the length summary (short, long), then per length its row and
    # its camera-change row
    assert md.count(f"| {system} |") == 1 + 1 + 2 * 3


@pytest.mark.parametrize("extra,expect", [
    (["--systems", "student,oracle"], "--systems: unknown 'oracle'"),
    (["--systems", ""], "--systems is empty"),
    (["--lengths", "short,medium"], "--lengths: unknown 'medium'"),
    (["--split", "tset"], "--split 'tset'"),
    (["--num-scenes", "0"], "--num-scenes 0"),
    (["--teacher", "MISSING"], "--teacher"),
    (["--vae", "MISSING"], "--vae"),
    (["--config", "teacher:tiny", "--systems", "student"], "not a student config"),
    (["--config", "nosuchconfig:tiny"], "unknown config"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, extra, expect):
  extra = [str(tmp_path / "missing") if a == "MISSING" else a for a in extra]
  out = tmp_path / "ev"
  rc = main(["eval", "--config", "student:tiny", "--num-scenes", "1", *extra,
             "--out", str(out)])
  assert rc == 2
  err = capsys.readouterr().err
  assert "realcam eval: error: " in err and expect in err, err
  assert [p.name for p in tmp_path.iterdir()] == []


def test_non_empty_out_needs_overwrite(tmp_path, capsys):
  out = tmp_path / "ev"
  out.mkdir()
  (out / "keep.txt").write_text("x")
  rc = main(["eval", "--config", "student:tiny", "--systems", "copy_source", "--out", str(out)])
  assert rc == 2
  assert "pass --overwrite" in capsys.readouterr().err
  assert [p.name for p in out.iterdir()] == ["keep.txt"]
