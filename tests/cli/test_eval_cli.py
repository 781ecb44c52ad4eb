"""`realcam eval` end to end on the tiny configs (random weights) and its bad-input errors."""

import json
import math

import pytest

from realcam_jax.cli import main

TINY = ["--config", "student:tiny", "--config.teacher.sampler.steps=2"]


def test_eval_all_systems_writes_results_and_plots(tmp_path, capsys):
  # student:tiny: short = 21 frames (6 latent), long = 45 frames (12 latent), so each model
  # compiles two shapes. The old spelling `--lengths short,long,loop` adds the loop case.
  out = tmp_path / "ev"
  rc = main(["eval", *TINY, "--num-scenes", "2", "--cases", "identity,pan_right,clip",
             "--lengths", "short,long,loop", "--bootstrap-samples", "100", "--out", str(out)])
  assert rc == 0
  cap = capsys.readouterr()
  assert "random weights: output is noise" in cap.err
  assert f"wrote {out}" in cap.out
  assert sorted(p.name for p in out.iterdir()) == [
      "frames_clip_short.png", "frames_identity_short.png", "frames_loop_short.png",
      "frames_pan_right_short.png", "loop_closure.png",
      "psnr_per_frame_clip_long.png", "psnr_per_frame_clip_short.png",
      "psnr_per_frame_loop_long.png", "psnr_per_frame_loop_short.png",
      "results.json", "results.md"]
  for png in out.glob("*.png"):
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  res = json.loads((out / "results.json").read_text())
  assert res["lengths"] == {"short": {"latent_frames": 6, "frames": 21, "factor": 1.0},
                            "long": {"latent_frames": 12, "frames": 45, "factor": 2.14}}
  assert list(res["cases"]) == ["identity", "pan_right", "clip", "loop"]
  assert list(res["systems"]) == ["student", "teacher", "prefix", "copy_source", "warp_source"]
  assert list(res["references"]) == ["vae_roundtrip", "blur_2px", "blur_4px", "blur_8px",
                                     "row_mean"]
  assert res["systems"]["prefix"]["info"]["layout"] == "prefix"
  assert res["systems"]["teacher"]["info"]["steps"] == 2
  for row, per in res["results"].items():
    assert list(per) == ["identity", "pan_right", "clip", "loop"]
    for case, by_length in per.items():
      for length, r in by_length.items():
        for key in ("psnr", "ssim", "psnr_static", "psnr_object", "ssim_object", "sharpness",
                    "sharpness_object", "flicker_ratio"):
          assert isinstance(r[key], float) and math.isfinite(r[key]), (row, case, length, key)
          lo, hi = r["ci"][key]
          assert lo <= r[key] <= hi, (row, case, length, key)
        assert len(r["per_frame_psnr"]) == res["lengths"][length]["frames"]
        assert ("beats" in r) == (row in res["systems"])
    assert per["loop"]["long"]["revisit_psnr_static"] < 100
  # identity: copy-source and warp-source are exact.
  assert res["results"]["copy_source"]["identity"]["short"]["psnr"] == 100.0
  assert res["results"]["warp_source"]["identity"]["short"]["psnr"] == 100.0
  assert res["systems"]["warp_source"]["info"] == {"depth": 8.0}
  md = (out / "results.md").read_text()
  assert "### loop, long (2.14x): 45 frames (12 latent)" in md
  for row in [*res["systems"], *res["references"]]:
    # the rows table; per case a length table and one table per length; the view-change
    # tables of clip and loop (2 lengths each)
    assert md.count(f"| {row} |") == 1 + 4 * (1 + 2) + 2 * 2


@pytest.mark.parametrize("extra,expect", [
    (["--systems", "student,oracle"], "--systems: unknown 'oracle'"),
    (["--systems", ""], "--systems is empty"),
    (["--lengths", "short,medium"], "--lengths: unknown 'medium'"),
    (["--cases", "clip,orbit"], "--cases: unknown 'orbit'"),
    (["--references", "blur_3px"], "--references: unknown 'blur_3px'"),
    (["--bootstrap-samples", "0"], "--bootstrap-samples 0"),
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
