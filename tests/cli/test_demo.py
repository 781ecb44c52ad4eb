"""`realcam demo` on the tiny config with random weights; missing checkpoints exit 2."""

import json
import math
import os

import numpy as np
import pytest

from realcam_jax.cli import bundled
from realcam_jax.cli import demo as demo_cli
from realcam_jax.cli import main
from realcam_jax.eval import metrics
from realcam_jax.inference import video_io

TINY = ["--config", "student:tiny", "--size", "16x16"]
# The bundled student on held-out scene 0 (arc_left): 19.3 dB vs 14.8 dB for copying the
# source (measured 2026-11-26); a 2 dB margin leaves room for numeric drift.
MARGIN_DB = 2.0


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("demo") / "out"
  rc = main(["demo", "--out", str(out), "--random-weights", "--trajectory", "pan_right", *TINY])
  return rc, out


def test_demo_writes_video_frames_and_report(demo_run):
  rc, out = demo_run
  assert rc == 0
  assert sorted(os.listdir(out)) == ["demo.mp4", "frames.npz", "report.json"]
  report = json.loads((out / "report.json").read_text())
  t = report["frames"]
  frames, fps = video_io.read_video(out / "demo.mp4")
  assert frames.shape == (t, 16, 3 * 16, 3) and fps == 15
  assert t == 1 + 4 * (6 - 1)                 # the tiny student's training length
  assert report["random_weights"] and report["chunks"] == 2
  assert report["command"].startswith("realcam demo --out")
  for key in ("first_chunk_latency_s", "steady_fps", "psnr_db", "ssim"):
    assert math.isfinite(report[key]) and report[key] > 0, key
  assert all(math.isfinite(x) and x > 0 for x in report["compile_s"].values())
  assert len(report["chunk_latency_s"]) == report["chunks"]
  assert len(report["psnr_per_frame"]) == t


def test_demo_psnr_matches_the_written_frames(demo_run):
  _, out = demo_run
  report = json.loads((out / "report.json").read_text())
  npz = np.load(out / "frames.npz")
  gen, gt, src = npz["generated"], npz["ground_truth"], npz["source"]
  assert gen.dtype == np.uint8 and gen.shape == gt.shape == src.shape
  assert report["psnr_db"] == pytest.approx(metrics.psnr(gen, gt).mean, abs=1e-9)
  assert report["ssim"] == pytest.approx(metrics.ssim(gen, gt).mean, abs=1e-9)
  # The mp4 panels are these frames up to h264 compression (noise from random weights
  # compresses badly at 16x16, so check only that each panel is nearest its own frames).
  video, _ = video_io.read_video(out / "demo.mp4")
  panels = (src, gen, gt)
  for i in range(3):
    err = [np.abs(video[..., 16 * i:16 * (i + 1), :].astype(int) - p.astype(int)).mean()
           for p in panels]
    assert np.argmin(err) == i, (i, err)


def test_ground_truth_follows_the_preset_from_the_clip_target_start():
  from realcam_jax.data import heldout, synthetic
  clip = heldout.heldout_view(0, 9, 16, 16, "clip")
  view = heldout.heldout_view(0, 9, 16, 16, "static")
  # A static preset from the clip's target start: every frame at the clip's frame-0 pose.
  np.testing.assert_allclose(view["target_poses"], np.broadcast_to(
      clip["target_poses"][0], view["target_poses"].shape), atol=1e-6)
  np.testing.assert_array_equal(view["source_rgb"], clip["source_rgb"])
  np.testing.assert_array_equal(view["target_rgb"][0], clip["target_rgb"][0])
  # "clip": the ground truth is the dataset clip's target camera.
  seed = heldout.split_seed(0)
  assert seed == 2**31
  raw = synthetic.sample_clip(seed, 9, 16, 16, 1)
  np.testing.assert_array_equal(clip["target_rgb"], raw["target_rgb"][0])


def test_missing_default_checkpoint_exits_2_without_output(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(bundled, "repo_root", lambda: str(tmp_path / "repo"))
  out = tmp_path / "out"
  assert main(["demo", "--out", str(out), *TINY]) == 2
  err = capsys.readouterr().err
  assert "checkpoints/student_demo is missing" in err and "--random-weights" in err
  assert not out.exists()
  (tmp_path / "repo" / "checkpoints" / "student_demo").mkdir(parents=True)
  assert main(["demo", "--out", str(out), *TINY]) == 2
  assert "checkpoints/vae_demo is missing" in capsys.readouterr().err
  assert main(["demo", "--out", str(out), "--student", str(tmp_path / "nope"), "--vae",
               str(tmp_path / "nope"), *TINY]) == 2
  assert "does not exist" in capsys.readouterr().err
  assert main(["demo", "--out", str(out), "--random-weights", "--student", "x", *TINY]) == 2
  assert not out.exists()


def test_bundled_demo_runs_with_no_arguments(tmp_path, monkeypatch):
  """The README's main command: `realcam demo` with the bundled student and VAE.

  The trained student must beat copying the source frames (the views differ by the
  scene's camera change) on the held-out scene it streams."""
  root = bundled.repo_root()
  for rel, _ in bundled.DEFAULT_CHECKPOINTS.values():
    assert os.path.isdir(os.path.join(root, rel)), f"bundled checkpoint {rel} is missing"
  monkeypatch.chdir(tmp_path)
  assert main(["demo"]) == 0
  out = tmp_path / demo_cli.DEFAULT_OUT
  report = json.loads((out / "report.json").read_text())
  assert not report["random_weights"] and report["config"] == demo_cli.DEFAULT_CONFIG
  assert report["scene"]["split"] == "test"
  npz = np.load(out / "frames.npz")
  assert npz["generated"].shape == npz["ground_truth"].shape == (report["frames"], 64, 64, 3)
  copy = metrics.psnr(npz["source"], npz["ground_truth"]).mean
  assert report["source_as_prediction"]["psnr_db"] == pytest.approx(copy, abs=1e-9)
  assert report["psnr_db"] > copy + MARGIN_DB, (report["psnr_db"], copy)
