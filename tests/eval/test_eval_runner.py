"""`realcam_jax.eval.runner` / `report` / `load.load_teacher`: lengths, copy-source numbers
against an independent computation, atomic report, teacher checkpoint round trip."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from realcam_jax.camera.pose import relative_to
from realcam_jax.config import get_config
from realcam_jax.data import synthetic
from realcam_jax.eval import geometry, metrics, report, runner, systems


def _settings(**kw):
  base = dict(height=32, width=32, fps=15.0, scene={}, rig={}, seed_offset=0,
              num_target_cameras=1, short_latent_frames=6, chunk_pairs=3, temporal_factor=4)
  return runner.SceneSettings(**dict(base, **kw))


def test_view_change_buckets():
  assert [runner.view_change_bucket(d) for d in (10.0, 35.0, 54.9, 55.0, 80.0)] == [
      "<35°", "35-55°", "35-55°", ">=55°", ">=55°"]


@pytest.mark.parametrize("short,k,expect", [
    # demo: 33 -> 21 (0.64x), 69 (2.09x) and 69 frames
    (9, 3, {"shorter": 6, "short": 9, "long": 18, "loop": 18}),
    (6, 3, {"shorter": 3, "short": 6, "long": 12, "loop": 12}),   # student:tiny: 21 -> 9, 45
    (3, 1, {"shorter": 2, "short": 3, "long": 6, "loop": 6}),     # teacher:tiny: 9 -> 5, 21
])
def test_latent_lengths_are_whole_chunks_near_2_2x(short, k, expect):
  got = runner.latent_lengths(_settings(short_latent_frames=short, chunk_pairs=k))
  assert got == expect
  assert all(f % k == 0 for f in got.values())
  assert runner.pixel_frames(got["short"]) == 1 + 4 * (short - 1)


def test_scene_settings_from_latent_configs():
  from realcam_jax.models import vae as vae_lib
  vae = vae_lib.create_vae(get_config("vae:tiny").model, seed=0)
  st = runner.scene_settings(get_config("student:tiny"), vae)
  assert (st.height, st.width, st.short_latent_frames, st.chunk_pairs) == (32, 32, 6, 3)
  assert (st.fps, st.seed_offset, st.num_target_cameras) == (15.0, 0, 1)
  st = runner.scene_settings(get_config("teacher:tiny"), vae)
  assert (st.short_latent_frames, st.chunk_pairs) == (3, 1)
  assert runner.scene_seeds("test", 2) == [2**31, 2**31 + 1]
  with pytest.raises(ValueError, match="unknown split"):
    runner.scene_seeds("tset", 2)


def test_short_case_is_the_test_clip_and_loop_returns_to_its_start():
  st = _settings(short_latent_frames=3, chunk_pairs=1, height=16, width=16)
  seed = 2**31
  case = runner.make_case(seed, "short", 3, st)
  clip = synthetic.sample_clip(seed, 9, 16, 16, 1)
  np.testing.assert_array_equal(case.source, clip["source_rgb"])
  np.testing.assert_array_equal(case.target, clip["target_rgb"][0])
  rel = relative_to(clip["target_c2w"][0].astype(np.float64), clip["source_c2w"][0])
  np.testing.assert_allclose(case.latent_poses, rel[::4], atol=1e-6)
  loop = runner.make_case(seed, "loop", 6, st)
  assert loop.target.shape == (21, 16, 16, 3)
  np.testing.assert_array_equal(loop.target_c2w[0], loop.target_c2w[-1])
  np.testing.assert_array_equal(loop.target_c2w[0], clip["target_c2w"][0][0])
  assert len(loop.loop_pairs) and (0, 20) in {tuple(p) for p in loop.loop_pairs}


def test_copy_source_numbers_equal_an_independent_computation():
  st = _settings(short_latent_frames=3, chunk_pairs=1, height=24, width=24)
  res = runner.run_eval({"copy_source": systems.copy_source()}, st, split="test",
                        num_scenes=2, lengths=("shorter", "short", "loop"), progress=False)
  assert res["seeds"] == [2**31, 2**31 + 1]
  assert res["lengths"] == {"shorter": dict(latent_frames=2, frames=5),
                            "short": dict(latent_frames=3, frames=9),
                            "loop": dict(latent_frames=6, frames=21)}
  # The 0.6x case: the same scene rendered at 5 frames.
  clip5 = synthetic.sample_clip(res["seeds"][0], 5, 24, 24, 1)
  mse5 = ((clip5["source_rgb"] / 255.0 - clip5["target_rgb"][0] / 255.0) ** 2).reshape(5, -1)
  np.testing.assert_allclose(res["results"]["copy_source"]["shorter"]["scenes"][0]["psnr"],
                             np.mean(10 * np.log10(1 / mse5.mean(axis=1))), rtol=1e-12)
  psnrs, ssims, static = [], [], []
  for seed in res["seeds"]:
    clip = synthetic.sample_clip(seed, 9, 24, 24, 1)
    src, gt = clip["source_rgb"], clip["target_rgb"][0]
    # Direct formula, not metrics.psnr: 10 log10(1 / MSE) per frame on [0, 1].
    mse = ((src / 255.0 - gt / 255.0) ** 2).reshape(9, -1).mean(axis=1)
    psnrs.append(np.mean(10 * np.log10(1 / mse)))
    ssims.append(metrics.ssim(src, gt).mean)
    m = clip["target_static_mask"][0]
    se = ((src / 255.0 - gt / 255.0) ** 2).sum(-1)
    static.append(np.mean([10 * np.log10(1 / (se[t][m[t]].sum() / (3 * m[t].sum())))
                           for t in range(9)]))
  short = res["results"]["copy_source"]["short"]
  np.testing.assert_allclose(short["psnr"], np.mean(psnrs), rtol=1e-12)
  np.testing.assert_allclose(short["ssim"], np.mean(ssims), rtol=1e-12)
  np.testing.assert_allclose(short["psnr_static"], np.mean(static), rtol=1e-12)
  np.testing.assert_allclose([s["psnr"] for s in short["scenes"]], psnrs, rtol=1e-12)
  # Buckets by camera change: each scene lands in the bucket of its rig's rotation.
  changes = [float(synthetic.sample_clip(sd, 9, 24, 24, 1)["view_change"][0, 0])
             for sd in res["seeds"]]
  assert [s["view_change_deg"] for s in short["scenes"]] == changes
  buckets = {}
  for c, p in zip(changes, psnrs):
    buckets.setdefault(runner.view_change_bucket(c), []).append(p)
  got = short["by_view_change"]
  assert set(got) == set(buckets) and sum(v["scenes"] for v in got.values()) == 2
  for b, ps in buckets.items():
    np.testing.assert_allclose(got[b]["psnr"], np.mean(ps), rtol=1e-12)
  assert len(short["per_frame_psnr"]) == 9
  # Loop closure of the copied source, recomputed from the true loop render.
  seed = res["seeds"][0]
  src = synthetic.sample_clip(seed, 21, 24, 24, 1)["source_rgb"]
  loop = synthetic.render_true_loop(seed, 21, 24, 24, start="target")
  pairs = geometry.find_loop_pairs(loop["c2w"])
  lc = metrics.loop_closure_error(src, pairs, loop["static_mask"])
  got = res["results"]["copy_source"]["loop"]["scenes"][0]["loop_mae"]
  np.testing.assert_allclose(got, lc.mean_mae, rtol=1e-12)
  assert np.isfinite(got) and got > 0


def _tiny_results():
  st = _settings(short_latent_frames=3, chunk_pairs=1, height=16, width=16)
  return runner.run_eval({"copy_source": systems.copy_source()}, st, num_scenes=1,
                         lengths=("short", "loop"), progress=False)


def test_report_files_and_atomic_failure(tmp_path, monkeypatch):
  res = _tiny_results()
  out = tmp_path / "ev"
  files = report.write_report(res, str(out))
  assert files == ["loop_closure.png", "psnr_per_frame_loop.png", "psnr_per_frame_short.png",
                   "results.json", "results.md"]
  loaded = json.loads((out / "results.json").read_text())
  assert loaded["results"]["copy_source"]["short"]["loop_mae"] == "nan"
  assert "| copy_source |" in (out / "results.md").read_text()
  with pytest.raises(report.ReportError, match="not empty"):
    report.write_report(res, str(out))

  def boom(*a, **k):
    raise RuntimeError("disk full")
  monkeypatch.setattr(report, "plot_loop_closure", boom)
  with pytest.raises(RuntimeError):
    report.write_report(res, str(tmp_path / "new"))
  with pytest.raises(RuntimeError):
    report.write_report(res, str(out), overwrite=True)
  # Nothing half-written: no new directory, no temporaries, the old report intact.
  assert sorted(p.name for p in tmp_path.iterdir()) == ["ev"]
  assert sorted(os.listdir(out)) == files


def test_load_teacher_round_trip_from_a_training_workdir(tmp_path, capsys):
  from realcam_jax.ckpt.manager import Checkpointer
  from realcam_jax.config import to_json
  from realcam_jax.inference import load
  from realcam_jax.models.realcam import RealCamDiT
  from realcam_jax.train import state as st

  config = get_config("teacher:tiny,prefix")
  _, params = st.split_model(RealCamDiT(config.model, rngs=nnx.Rngs(7)))
  ckpt = Checkpointer(str(tmp_path / "w" / "ckpt"), with_data=False)
  ckpt.save(2, st.TrainState(step=np.int32(2), params=params, opt_state=()),
            json.loads(to_json(config)), force=True)
  ckpt.close()
  # The saved model section wins: an interleaved base config loads the prefix model.
  cfg, graphdef, loaded = load.load_teacher(str(tmp_path / "w"), get_config("teacher:tiny"))
  assert cfg.model.layout == "prefix"
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  _, _, rand = load.load_teacher(None, get_config("teacher:tiny"), seed=0)
  assert "random weights" in capsys.readouterr().err
  assert jax.tree.structure(rand) == jax.tree.structure(params)
  with pytest.raises(load.LoadError, match="does not exist"):
    load.load_teacher(str(tmp_path / "missing"), config)
  with pytest.raises(load.LoadError, match="cannot load the teacher"):
    load.load_teacher(str(tmp_path), config)


def test_markdown_length_table_lists_psnr_per_length_against_the_training_length():
  st = _settings(short_latent_frames=3, chunk_pairs=1, height=16, width=16)
  res = runner.run_eval({"copy_source": systems.copy_source()}, st, num_scenes=1,
                        lengths=("shorter", "short", "long", "loop"), progress=False)
  md = report.markdown(res)
  lines = md.splitlines()
  head = lines.index("PSNR (dB) by video length (1x = the training length, 9 frames):")
  frames = {n: res["lengths"][n]["frames"] for n in ("shorter", "short", "long")}
  assert lines[head + 2] == ("| system | " + " | ".join(
      f"{n} ({f / 9:.1f}x, {f} frames)" for n, f in frames.items()) + " |")
  r = res["results"]["copy_source"]
  assert lines[head + 4] == ("| copy_source | " + " | ".join(
      f"{r[n]['psnr']:.2f}" for n in frames) + " |")
  assert frames["short"] == 9 and frames["shorter"] < 9 < frames["long"]
  # One open-path length: no summary table.
  assert "by video length" not in report.markdown(_tiny_results())


def test_kept_videos_are_what_was_scored_and_the_frame_sheet_lays_them_out(tmp_path):
  st = _settings(short_latent_frames=3, chunk_pairs=1, height=16, width=16)
  videos = {}
  res = runner.run_eval({"copy_source": systems.copy_source()}, st, num_scenes=2,
                        lengths=("short", "loop"), progress=False, keep_videos=videos)
  assert list(videos) == ["short", "loop"]
  for length in videos:
    v = videos[length]
    assert list(v) == ["source", "copy_source", "truth"]
    case = runner.make_case(res["seeds"][0], length, res["lengths"][length]["latent_frames"], st)
    np.testing.assert_array_equal(v["source"], case.source)
    np.testing.assert_array_equal(v["truth"], case.target)
    np.testing.assert_array_equal(v["copy_source"], case.source)   # what copy-source made
    # Its PSNR is the first scene's recorded PSNR.
    got = res["results"]["copy_source"][length]["scenes"][0]["psnr"]
    np.testing.assert_allclose(metrics.psnr(v["copy_source"], v["truth"]).mean, got, rtol=1e-12)
  grid, idx = report.frame_sheet(videos["short"])
  assert idx == [0, 2, 4, 6, 8]                  # 9 frames: five spread from first to last
  zoom = -(-report.FRAME_MIN_SIZE // 16)
  assert grid.shape == (5 * 16 * zoom, 3 * 16 * zoom, 3) and grid.dtype == np.uint8
  # Row 1, column 2 is frame 2 of the truth, enlarged.
  cell = grid[16 * zoom:32 * zoom, 32 * zoom:48 * zoom]
  np.testing.assert_array_equal(cell[::zoom, ::zoom], videos["short"]["truth"][2])
  with pytest.raises(ValueError, match="differ in shape"):
    report.frame_sheet({"a": videos["short"]["truth"], "b": videos["loop"]["truth"]})
  files = report.write_report(res, str(tmp_path / "ev"), videos=videos)
  assert {"frames_short.png", "frames_loop.png"} <= set(files)
  # Without kept videos nothing changes (no frame sheets).
  assert not any(f.startswith("frames_") for f in report.write_report(res, str(tmp_path / "e2")))
