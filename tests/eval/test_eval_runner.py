"""`realcam_jax.eval.runner` / `cases` / `report` / `load.load_teacher`: lengths and cases at a
fixed camera speed, copy-source numbers against an independent computation, reference rows
and what beats them, atomic report, teacher checkpoint round trip."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realcam_jax.camera import presets
from realcam_jax.camera.pose import relative_to
from realcam_jax.config import get_config
from realcam_jax.data import synthetic
from realcam_jax.eval import cases, fidelity, geometry, loops, metrics, report, runner, systems


def _settings(**kw):
  base = dict(height=32, width=32, fps=15.0, scene={}, rig={}, seed_offset=0,
              num_target_cameras=1, short_latent_frames=6, chunk_pairs=3, temporal_factor=4)
  return runner.SceneSettings(**dict(base, **kw))


def test_view_change_buckets():
  assert [runner.view_change_bucket(d) for d in (10.0, 35.0, 54.9, 55.0, 80.0)] == [
      "<35°", "35-55°", "35-55°", ">=55°", ">=55°"]


@pytest.mark.parametrize("short,k,expect", [
    (9, 3, {"shorter": 6, "short": 9, "long": 18}),   # demo: 33 -> 21 (0.64x), 69 (2.09x)
    (6, 3, {"shorter": 3, "short": 6, "long": 12}),   # student:tiny: 21 -> 9, 45
    (3, 1, {"shorter": 2, "short": 3, "long": 6}),    # teacher:tiny: 9 -> 5, 21
])
def test_latent_lengths_are_whole_chunks_near_2_2x(short, k, expect):
  got = runner.latent_lengths(_settings(short_latent_frames=short, chunk_pairs=k))
  assert got == expect
  assert all(f % k == 0 for f in got.values())
  assert runner.pixel_frames(got["short"]) == 1 + 4 * (short - 1)
  with pytest.raises(ValueError, match="unknown lengths"):
    runner.latent_lengths(_settings(), ("loop",))


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


def test_cases_cut_one_scene_at_a_fixed_camera_speed():
  st = _settings(short_latent_frames=3, chunk_pairs=1, height=16, width=16)
  seed = 2**31
  lat = runner.latent_lengths(st)                       # 5, 9, 21 frames
  got = {(c.case, c.length): c for c in runner.make_cases(
      seed, st, ["identity", "pan_right", "arc_left", "clip", "loop"], lat)}
  clip = synthetic.sample_clip(seed, 21, 16, 16, 1)     # drawn for the long length
  src_rel = relative_to(clip["source_c2w"].astype(np.float64), clip["source_c2w"][0])
  for length, t in (("shorter", 5), ("short", 9), ("long", 21)):
    ident, c = got[("identity", length)], got[("clip", length)]
    # Every length is the first T frames of the same scene.
    np.testing.assert_array_equal(c.source, clip["source_rgb"][:t])
    np.testing.assert_array_equal(c.target, clip["target_rgb"][0][:t])
    # identity: the target camera is the source camera, the truth is the source video.
    np.testing.assert_array_equal(ident.target, clip["source_rgb"][:t])
    np.testing.assert_allclose(ident.latent_poses, src_rel[:t][::4], atol=1e-6)
    # Every case carries the source camera per latent frame (camera_reference = pair).
    for case in ("identity", "pan_right", "clip", "loop"):
      np.testing.assert_allclose(got[(case, length)].source_latent_poses, src_rel[:t][::4],
                                 atol=1e-6)
    assert ident.object_mask.shape == (t, 16, 16) and ident.view_change_deg == 0.0
  # Presets: the longer path extends the shorter one (same poses on shared frames) and the
  # 1x path is the preset itself.
  for name in ("pan_right", "arc_left"):
    short, long = got[(name, "short")], got[(name, "long")]
    np.testing.assert_allclose(long.latent_poses[:3], short.latent_poses, atol=1e-6)
    np.testing.assert_array_equal(long.target[:9], short.target)
    np.testing.assert_allclose(short.latent_poses, presets.get_trajectory(name, 9)[::4],
                               atol=1e-6)
  # pan_right turns 19.876 deg over the 9 training frames: 2.48 deg per frame, also at 21.
  yaw = geometry.rotation_angle_deg(np.eye(3), got[("pan_right", "long")].latent_poses[-1, :3, :3])
  assert yaw == pytest.approx(20 * presets.RECAM_REACH * 20 / 8, rel=1e-5)
  # Loops return to their start exactly, from the clip's target camera 0.
  for length in lat:
    loop = got[("loop", length)]
    np.testing.assert_array_equal(loop.target_c2w[0], loop.target_c2w[-1])
    np.testing.assert_allclose(loop.target_c2w[0], clip["target_c2w"][0][0], atol=1e-6)
  assert (0, 20) in {tuple(p) for p in got[("loop", "long")].loop_pairs}
  with pytest.raises(ValueError, match="unknown case 'orbit'"):
    runner.make_cases(seed, st, cases.expand_cases(["orbit"]), lat)


def test_copy_source_numbers_equal_an_independent_computation():
  st = _settings(short_latent_frames=3, chunk_pairs=1, height=24, width=24)
  res = runner.run_eval({"copy_source": systems.copy_source()}, st, split="test",
                        num_scenes=2, cases=("identity", "clip", "loop"),
                        lengths=("shorter", "short"), references={}, progress=False,
                        bootstrap_samples=200)
  assert res["seeds"] == [2**31, 2**31 + 1]
  assert res["lengths"] == {"shorter": dict(latent_frames=2, frames=5, factor=0.56),
                            "short": dict(latent_frames=3, frames=9, factor=1.0)}
  cs = res["results"]["copy_source"]
  # identity: the truth is the source, so copy-source is exact (PSNR at the 100 dB cap).
  assert cs["identity"]["short"]["psnr"] == cs["identity"]["short"]["psnr_object"] == 100.0
  psnrs, ssims, static, obj = [], [], [], []
  for seed in res["seeds"]:
    clip = synthetic.sample_clip(seed, 21, 24, 24, 1)
    src, gt = clip["source_rgb"][:9], clip["target_rgb"][0][:9]
    # Direct formula, not metrics.psnr: 10 log10(1 / MSE) per frame on [0, 1].
    mse = ((src / 255.0 - gt / 255.0) ** 2).reshape(9, -1).mean(axis=1)
    psnrs.append(np.mean(10 * np.log10(1 / mse)))
    ssims.append(metrics.ssim(src, gt).mean)
    se = ((src / 255.0 - gt / 255.0) ** 2).sum(-1)
    m = clip["target_static_mask"][0][:9]
    static.append(np.mean([10 * np.log10(1 / (se[t][m[t]].sum() / (3 * m[t].sum())))
                           for t in range(9)]))
    o = fidelity.object_region(clip["target_depth"][0][:9], clip["target_c2w"][0][:9],
                               clip["intrinsics"])
    obj.append(np.mean([10 * np.log10(1 / (se[t][o[t]].sum() / (3 * o[t].sum())))
                        for t in range(9) if o[t].any()]))
  short = cs["clip"]["short"]
  np.testing.assert_allclose(short["psnr"], np.mean(psnrs), rtol=1e-12)
  np.testing.assert_allclose(short["ssim"], np.mean(ssims), rtol=1e-12)
  np.testing.assert_allclose(short["psnr_static"], np.mean(static), rtol=1e-12)
  np.testing.assert_allclose(short["psnr_object"], np.mean(obj), rtol=1e-12)
  np.testing.assert_allclose([s["psnr"] for s in short["scenes"]], psnrs, rtol=1e-12)
  lo, hi = short["ci"]["psnr"]
  assert min(psnrs) <= lo <= short["psnr"] <= hi <= max(psnrs)
  # Buckets by camera change: each scene lands in the bucket of its rig's rotation.
  changes = [float(synthetic.sample_clip(sd, 21, 24, 24, 1)["view_change"][0, 0])
             for sd in res["seeds"]]
  assert [s["view_change_deg"] for s in short["scenes"]] == changes
  assert sum(v["scenes"] for v in short["by_view_change"].values()) == 2
  assert len(short["per_frame_psnr"]) == 9
  # Loop closure of the copied source against the true loop's truth.
  seed = res["seeds"][0]
  case = next(c for c in runner.make_cases(seed, st, ["loop"], {"short": 3}))
  want = loops.loop_scores(case.source, case.target, case.loop_pairs, case.static_mask)
  got = cs["loop"]["short"]["scenes"][0]
  for k in loops.LOOP_METRICS:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-12)
  assert np.isfinite(got["revisit_psnr_static"]) and got["revisit_psnr_static"] < 40


def test_references_are_rows_and_systems_say_which_they_beat():
  st = _settings(short_latent_frames=3, chunk_pairs=1, height=24, width=24)
  exact = systems.System("exact", lambda *a: None)
  res = runner.run_eval({"copy_source": systems.copy_source()}, st, num_scenes=3,
                        cases=("identity", "pan_right", "zoom_in"), lengths=("short",),
                        progress=False, bootstrap_samples=200)
  assert set(res["references"]) == {"blur_2px", "blur_4px", "blur_8px", "row_mean"}
  assert list(res["cases"]) == ["identity", "pan_right", "zoom_in", "presets"]
  assert res["cases"]["pan_right"]["speed"] == f"{20 * presets.RECAM_REACH / 8:.4g} deg/frame"
  rows = res["results"]
  # identity: copy-source is the truth, so it beats every blur and the row mean.
  assert sorted(rows["copy_source"]["identity"]["short"]["beats"]["psnr_object"]) == sorted(
      res["references"])
  assert "beats" not in rows["blur_4px"]["identity"]["short"]
  # The presets row is the per-scene mean of the single presets.
  for k in ("psnr", "psnr_object", "sharpness"):
    want = [np.mean([rows["blur_4px"][c]["short"]["scenes"][i][k] for c in ("pan_right",
                                                                            "zoom_in")])
            for i in range(3)]
    np.testing.assert_allclose([s[k] for s in rows["blur_4px"]["presets"]["short"]["scenes"]],
                               want, rtol=1e-12)
  # A blur is less sharp than the truth; more blur, less sharp.
  sharp = [rows[f"blur_{s}px"]["identity"]["short"]["sharpness_object"] for s in (2, 4, 8)]
  assert 1 > sharp[0] > sharp[1] > sharp[2] > 0
  with pytest.raises(ValueError, match="names of systems"):
    runner.run_eval({"row_mean": exact}, st, num_scenes=1, cases=("identity",),
                    lengths=("short",), progress=False)


def _tiny_results():
  st = _settings(short_latent_frames=3, chunk_pairs=1, height=16, width=16)
  return runner.run_eval({"copy_source": systems.copy_source()}, st, num_scenes=1,
                         cases=("clip", "loop"), lengths=("short",), progress=False,
                         bootstrap_samples=50)


def test_report_files_and_atomic_failure(tmp_path, monkeypatch):
  res = _tiny_results()
  out = tmp_path / "ev"
  files = report.write_report(res, str(out))
  assert files == ["loop_closure.png", "psnr_per_frame_clip_short.png",
                   "psnr_per_frame_loop_short.png", "results.json", "results.md"]
  loaded = json.loads((out / "results.json").read_text())
  assert loaded["results"]["copy_source"]["clip"]["short"]["revisit_psnr"] == "nan"
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


def test_markdown_length_table_lists_object_psnr_per_length():
  st = _settings(short_latent_frames=3, chunk_pairs=1, height=16, width=16)
  res = runner.run_eval({"copy_source": systems.copy_source()}, st, num_scenes=1,
                        cases=("clip",), lengths=("shorter", "short", "long"),
                        references={}, progress=False, bootstrap_samples=50)
  md = report.markdown(res)
  lines = md.splitlines()
  head = lines.index("Object-region PSNR (dB) by video length, clip (1x = the training "
                     "length):")
  frames = {n: res["lengths"][n]["frames"] for n in ("shorter", "short", "long")}
  assert lines[head + 2] == ("| row | " + " | ".join(
      f"{n} ({res['lengths'][n]['factor']:g}x, {f} frames)" for n, f in frames.items()) + " |")
  r = res["results"]["copy_source"]["clip"]
  assert lines[head + 4] == ("| copy_source | " + " | ".join(
      f"{r[n]['psnr_object']:.2f}" for n in frames) + " |")       # one scene: no interval
  assert frames["short"] == 9 and frames["shorter"] < 9 < frames["long"]
  assert "camera speed: the rig's target path drawn over 21 frames" in md
  # One length: no summary table.
  assert "by video length" not in report.markdown(_tiny_results())


def test_kept_videos_are_what_was_scored_and_the_frame_sheet_lays_them_out(tmp_path):
  st = _settings(short_latent_frames=3, chunk_pairs=1, height=16, width=16)
  videos = {}
  res = runner.run_eval({"copy_source": systems.copy_source()}, st, num_scenes=2,
                        cases=("clip", "loop"), lengths=("shorter", "short"),
                        references={}, progress=False, keep_videos=videos,
                        bootstrap_samples=50)
  assert list(videos) == ["clip/short", "loop/short"]
  for key in videos:
    case_name, length = key.split("/")
    v = videos[key]
    assert list(v) == ["source", "copy_source", "truth"]
    case = next(c for c in runner.make_cases(res["seeds"][0], st, [case_name],
                                             {length: res["lengths"][length]["latent_frames"]}))
    np.testing.assert_array_equal(v["source"], case.source)
    np.testing.assert_array_equal(v["truth"], case.target)
    np.testing.assert_array_equal(v["copy_source"], case.source)   # what copy-source made
    got = res["results"]["copy_source"][case_name][length]["scenes"][0]["psnr"]
    np.testing.assert_allclose(metrics.psnr(v["copy_source"], v["truth"]).mean, got, rtol=1e-12)
  grid, idx = report.frame_sheet(videos["clip/short"])
  assert idx == [0, 2, 4, 6, 8]                  # 9 frames: five spread from first to last
  zoom = -(-report.FRAME_MIN_SIZE // 16)
  assert grid.shape == (5 * 16 * zoom, 3 * 16 * zoom, 3) and grid.dtype == np.uint8
  # Row 1, column 2 is frame 2 of the truth, enlarged.
  cell = grid[16 * zoom:32 * zoom, 32 * zoom:48 * zoom]
  np.testing.assert_array_equal(cell[::zoom, ::zoom], videos["clip/short"]["truth"][2])
  with pytest.raises(ValueError, match="differ in shape"):
    report.frame_sheet({"a": videos["clip/short"]["truth"], "b": v["truth"][:5]})
  files = report.write_report(res, str(tmp_path / "ev"), videos=videos)
  assert {"frames_clip_short.png", "frames_loop_short.png"} <= set(files)
  # Without kept videos nothing changes (no frame sheets).
  assert not any(f.startswith("frames_") for f in report.write_report(res, str(tmp_path / "e2")))


def test_after_scene_sees_the_results_of_the_scenes_done_so_far():
  st = _settings(short_latent_frames=3, chunk_pairs=1, height=16, width=16)
  kw = dict(cases=("clip",), lengths=("short",), references={}, progress=False,
            bootstrap_samples=50)
  seen = []
  full = runner.run_eval({"copy_source": systems.copy_source()}, st, num_scenes=2,
                         after_scene=seen.append, **kw)
  one = runner.run_eval({"copy_source": systems.copy_source()}, st, num_scenes=1, **kw)
  assert len(seen) == 1 and seen[0]["seeds"] == full["seeds"][:1] == one["seeds"]
  assert report.to_jsonable(seen[0]["results"]) == report.to_jsonable(one["results"])  # NaN-safe
  first = [report.to_jsonable(r["results"]["copy_source"]["clip"]["short"]["scenes"][0])
           for r in (full, one)]
  assert first[0] == first[1]


def test_warp_source_is_the_source_at_the_identity_and_beats_copying_it_on_rotations():
  """The geometry row against the renderer's truth: at the identity camera it is the source
  (exact), on a pan / tilt (rotations: exact whatever the depth, up to resampling and the
  strip the source never saw) it beats copy-source on every scene; it is judged with
  copy-source against the other systems."""
  st = _settings(short_latent_frames=3, chunk_pairs=1, height=32, width=32)
  rows = {"copy_source": systems.copy_source(), "warp_source": systems.warp_source(8.0, 4)}
  res = runner.run_eval(rows, st, num_scenes=3, cases=("identity", "pan_left", "tilt_up"),
                        lengths=("short",), references={}, progress=False,
                        bootstrap_samples=200)
  r = res["results"]
  assert r["warp_source"]["identity"]["short"]["psnr"] == 100.0
  for case in ("pan_left", "tilt_up"):
    warp = [s["psnr"] for s in r["warp_source"][case]["short"]["scenes"]]
    copy = [s["psnr"] for s in r["copy_source"][case]["short"]["scenes"]]
    assert all(w > c + 3.0 for w, c in zip(warp, copy)), (case, warp, copy)
  assert "copy_source" in r["warp_source"]["presets"]["short"]["beats"]["psnr"]
  assert res["systems"]["warp_source"]["info"] == {"depth": 8.0}


def _fresh_warp_teacher(ablation, steps, turn_deg):
  """(config, graphdef, params, vae, system, source, src_poses, tgt_poses, K): a fresh tiny
  teacher of `configs/teacher.py:tiny,ABLATION` (zero head: x0 = anchor at every step), a
  random 9-frame source, a panning source camera and a turning, sliding target."""
  from realcam_jax.camera.intrinsics import intrinsics_from_fov
  from realcam_jax.camera.pose import make_pose, rotation_y
  from realcam_jax.models import vae as vae_lib
  from realcam_jax.models.realcam import RealCamDiT
  config = get_config(f"teacher:tiny,{ablation}")
  config.sampler.steps = steps
  vae = vae_lib.create_vae(get_config("vae:tiny").model, seed=0)
  graphdef, params = nnx.split(RealCamDiT(config.model, rngs=nnx.Rngs(0)))
  system = systems.teacher_system("teacher", config, graphdef, params, vae)
  f = 3
  source = np.random.default_rng(0).integers(0, 255, (1 + 4 * (f - 1), 32, 32, 3), np.uint8)
  src_poses = np.stack([make_pose(rotation_y(np.deg2rad(3.0 * j)), np.zeros(3))
                        for j in range(f)]).astype(np.float32)
  tgt_poses = np.stack([make_pose(rotation_y(np.deg2rad(turn_deg * j)), np.array([0.2 * j, 0, 0]))
                        for j in range(f)]).astype(np.float32)
  K = np.asarray(intrinsics_from_fov(60.0, 32, 32), np.float32)
  return config, graphdef, params, vae, system, source, src_poses, tgt_poses, K


def test_a_fresh_warped_source_teacher_generates_its_anchor():
  """teacher_system passes each frame's pose relative to the source camera to the anchor:
  a fresh warped_source teacher (zero head: x0 = anchor at every step) returns the VAE
  decode of the warped source latents, computed here from the per-frame relative poses."""
  from realcam_jax.models.warp_anchor import warped_source
  config, _, _, vae, system, source, src_poses, tgt_poses, K = _fresh_warp_teacher(
      "warped_source", 3, -4.0)
  got = system.generate(source, tgt_poses, K, 0, source_poses=src_poses)
  lat = vae.encode(jnp.asarray(source, jnp.float32)[None] / 127.5 - 1.0)
  pair = np.linalg.inv(src_poses) @ tgt_poses
  anchor = warped_source(config.model, lat, pair[None], K[None], vae.spatial_factor)
  want = np.clip(np.round((np.asarray(vae.decode(anchor))[0] + 1) * 127.5), 0, 255)
  assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
  assert np.abs(got.astype(int) - source.astype(int)).mean() > 1    # not the source


def test_a_fresh_pixel_warp_teacher_generates_the_encoded_video_warp():
  """`warp_space = "pixel"`: the anchor is the source video warped frame by frame (poses
  interpolated between latent frames, `warp_source_video`) and encoded; a fresh teacher
  returns its decode, which differs from the latent warp's."""
  from realcam_jax.camera.warp import warp_source_video
  config, graphdef, params, vae, system, source, src_poses, tgt_poses, K = _fresh_warp_teacher(
      "pixel_warp", 2, -6.0)
  got = system.generate(source, tgt_poses, K, 0, source_poses=src_poses)
  warped = warp_source_video(source, tgt_poses, src_poses, K, config.model.warp_depth)
  lat = vae.encode(jnp.asarray(warped, jnp.float32)[None] / 127.5 - 1.0)
  want = np.clip(np.round((np.asarray(vae.decode(lat))[0] + 1) * 127.5), 0, 255)
  assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
  config.model.warp_space = "latent"
  latent = systems.teacher_system("teacher", config, graphdef, params, vae)
  other = latent.generate(source, tgt_poses, K, 0, source_poses=src_poses)
  assert np.abs(other.astype(int) - want.astype(int)).mean() > 1
