"""`realcam eval` as a library: systems and references x held-out scenes x cases x lengths.

    results = run_eval(systems, scene_settings(config, vae), split="test", num_scenes=16,
                       cases=("identity", "presets", "clip", "loop"))

Scenes, cases and lengths: `cases.py` (fixed per-frame camera speed; the identity case,
ReCamMaster's presets from the source pose, the clip's target camera, true loops). Every
row sees the same source video, target trajectory and intrinsics:

  systems     `systems.System` generators (student, teacher, prefix, copy_source)
  references  images built from the truth with no model: Gaussian blur at sigma 2 / 4 / 8
              px and the row-mean image (`default_references`), and the VAE round trip
              (`systems.vae_roundtrip`, added by the CLI)

Metrics per video (`fidelity`, `loops`, `metrics`; docs/metrics.md): PSNR / SSIM on the
whole frame, the static region and the object region, the sharpness ratio (whole frame
and object region), temporal flicker, loop closure against the truth where the target
path revisits a pose, optionally camera adherence. Each is a mean over scenes with a
95% bootstrap interval (`summary.aggregate`); the mean over the ten presets is the
"presets" case; each system lists the references it beats (`summary.add_beats`).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

from realcam_jax.data import tfds_builder
from realcam_jax.eval import cases as cases_lib
from realcam_jax.eval import fidelity, loops, metrics, stats, summary
from realcam_jax.eval.cases import (  # noqa: F401  (public API)
    CASE_GROUPS, LENGTHS, Case, SceneSettings, latent_lengths, make_cases, pixel_frames,
    scene_seeds)
from realcam_jax.eval.summary import METRICS, view_change_bucket  # noqa: F401

SPLITS = tuple(tfds_builder.SPLIT_SEED_BASE)
DEFAULT_NUM_SCENES = 16
FRAME_SHEET_CASES = ("identity", "pan_right", "clip", "loop")


def _plain(x) -> dict:
  return x.to_dict() if hasattr(x, "to_dict") else dict(x or {})


def scene_settings(config, vae) -> SceneSettings:
  """Scene settings from `config.data` (pixel fields as in configs/data.py where present).

  A latent training config (configs/teacher.py, configs/student.py) has only latent
  shapes: the pixel size is the latent size times the VAE's factors and fps / scene /
  rig / seed offset / cameras are the dataset defaults (what `configs/data.py:demo`
  renders), so the demo configs evaluate on the demo test clips.
  """
  d = config.data
  s, r = vae.spatial_factor, vae.temporal_factor
  height = int(d.height) if "height" in d else int(d.latent_height) * s
  width = int(d.width) if "width" in d else int(d.latent_width) * s
  if "latent_frames" in d:
    short = int(d.latent_frames)
  else:
    short = 1 + (int(d.get("train_frames", d.num_frames)) - 1) // r
  k = int(config.student.chunk_pairs) if "student" in config else 1
  if short < 1 or short % k:
    raise ValueError(f"training length of {short} latent frames is not a whole number of "
                     f"student chunks of {k}")
  return SceneSettings(
      height=height, width=width, fps=float(d.get("fps", 15.0)), scene=_plain(d.get("scene")),
      rig=_plain(d.get("rig")), seed_offset=int(d.get("seed_offset", 0)),
      num_target_cameras=int(d.get("num_target_cameras", 1)), short_latent_frames=short,
      chunk_pairs=k, temporal_factor=r)


# ----------------------------------------------------------------------------- references

def default_references() -> dict:
  """{name: truth u8[T, H, W, 3] -> u8[T, H, W, 3]}: blurs at BLUR_SIGMAS and the row mean."""
  refs = {f"blur_{s:g}px": (lambda truth, s=s: fidelity.gaussian_blur(truth, s))
          for s in fidelity.BLUR_SIGMAS}
  refs["row_mean"] = fidelity.row_mean
  return refs


# ----------------------------------------------------------------------------- scoring

def score(pred: np.ndarray, case: Case, *, adherence: bool = False) -> dict:
  """Metrics of one generated video against its case.

  Args:
    pred: u8[T, H, W, 3].
    case: what it was generated for.

  Returns:
    dict with the METRICS scalars (NaN where undefined: an empty region, no loop pair,
    no adherence) and `per_frame_psnr` f64[T].
  """
  gt = case.target
  if pred.shape != gt.shape:
    raise ValueError(f"{case.case} {case.length} video of scene {case.seed}: generated shape "
                     f"{pred.shape} != ground truth {gt.shape}")
  nan = float("nan")
  r = fidelity.region_scores(pred, gt, dict(all=None, static=case.static_mask,
                                            object=case.object_mask))
  out = dict(psnr=r["psnr_all"], ssim=r["ssim_all"], psnr_static=r["psnr_static"],
             ssim_static=r["ssim_static"], psnr_object=r["psnr_object"],
             ssim_object=r["ssim_object"], per_frame_psnr=r["psnr_all_per_frame"])
  out["sharpness"] = fidelity.sharpness_ratio(pred, gt).ratio
  obj = case.object_mask[:, 1:-1, 1:-1].any()
  out["sharpness_object"] = (fidelity.sharpness_ratio(pred, gt, case.object_mask).ratio
                             if obj else nan)
  fl = metrics.temporal_flicker(pred, gt)
  out.update(flicker=fl.pred, flicker_gt=fl.gt, flicker_ratio=fl.ratio)
  out.update(loops.loop_scores(pred, gt, case.loop_pairs, case.static_mask))
  out["rot_err_deg"] = out["trans_err_deg"] = nan
  if adherence:
    from realcam_jax.eval import camera_adherence
    t = len(pred)
    res = camera_adherence.camera_adherence(pred, case.target_c2w, case.intrinsics,
                                            stride=max(1, (t - 1) // 8), mask=case.static_mask)
    out.update(rot_err_deg=res.median_rot_err_deg, trans_err_deg=res.median_trans_err_deg)
  return out


# ----------------------------------------------------------------------------- the run

def run_eval(systems: dict, settings: SceneSettings, *, split: str = "test",
             num_scenes: int = DEFAULT_NUM_SCENES, cases=CASE_GROUPS, lengths=LENGTHS,
             references: dict | None = None, seed: int = 0, adherence: bool = False,
             progress: bool = True, keep_videos: dict | None = None,
             bootstrap_samples: int = stats.BOOTSTRAP_SAMPLES, after_scene=None) -> dict:
  """Runs every system and reference on the same scenes, cases and lengths.

  Args:
    systems: {name: `systems.System`} (see `systems.load_systems`).
    settings: from `scene_settings`.
    split: dataset split whose seeds give the scenes ("test": held out).
    num_scenes: how many clips of the split (its first ones).
    cases: CASE_GROUPS entries or single presets (`cases.expand_cases`).
    lengths: subset of LENGTHS.
    references: {name: truth -> video}; None: `default_references()`.
    seed: noise seed; scene i uses seed + i for every system, case and length.
    adherence: also measure camera adherence (slow: feature matching per frame).
    progress: tqdm bar over scenes on stderr.
    keep_videos: if a dict, filled with the first scene's videos of FRAME_SHEET_CASES at
      the training length (else the first), `{"case/length": {"source": u8[T,H,W,3], <system>: ...,
      "truth": ...}}` (for `report.write_report(..., videos=)`).
    bootstrap_samples: resamples per interval.
    after_scene: optional `fn(results)` called after each scene with the results of the
      scenes done so far (e.g. to save partial results of a long run).

  Returns:
    JSON-ready dict: `split`, `seeds`, `settings`, `cases` ({name: {speed}}), `lengths`
    ({name: {latent_frames, frames, factor}}), `systems` ({name: {checkpoint, info,
    seconds}}), `references` ({name: {seconds}}), `bootstrap`, and `results`
    ({row: {case: {length: summary.aggregate(...)}}}); see docs/metrics.md.
  """
  from tqdm import tqdm
  names = cases_lib.expand_cases(cases)
  lengths = list(dict.fromkeys(lengths))
  bad = [n for n in lengths if n not in LENGTHS]
  if bad or not lengths:
    raise ValueError(f"unknown lengths {bad}; expected some of {LENGTHS}")
  if num_scenes < 1:
    raise ValueError(f"num_scenes={num_scenes}: expected >= 1")
  references = default_references() if references is None else dict(references)
  clash = set(references) & set(systems)
  if clash:
    raise ValueError(f"references {sorted(clash)} have the names of systems")
  seeds = scene_seeds(split, num_scenes, settings.seed_offset)
  lat = latent_lengths(settings, tuple(lengths))
  rows = list(systems) + list(references)
  scores = {row: {c: {n: [] for n in lengths} for c in names} for row in rows}
  seconds = {row: 0.0 for row in rows}
  keep_cases = [c for c in FRAME_SHEET_CASES if c in names] or names[:1]
  keep_length = "short" if "short" in lengths else lengths[0]
  for i, clip_seed in enumerate(tqdm(seeds, desc="eval", unit="scene", file=sys.stderr,
                                     disable=not progress)):
    for case in make_cases(clip_seed, settings, names, lat):
      keep = (keep_videos is not None and i == 0 and case.case in keep_cases
              and case.length == keep_length)
      kept = {"source": case.source} if keep else None
      for name in rows:
        t0 = time.perf_counter()
        if name in systems:
          pred = systems[name].generate(case.source, case.latent_poses, case.intrinsics,
                                        seed + i, source_poses=case.source_latent_poses)
        else:
          pred = references[name](case.target)
        pred = np.asarray(pred)
        seconds[name] += time.perf_counter() - t0
        if keep and name in systems:
          kept[name] = pred
        s = score(pred, case, adherence=adherence)
        scores[name][case.case][case.length].append(
            dict(s, seed=clip_seed, view_change_deg=case.view_change_deg))
      if keep:
        keep_videos[f"{case.case}/{case.length}"] = dict(kept, truth=case.target)
    if after_scene is not None and i + 1 < len(seeds):
      after_scene(_results(scores, seeds[:i + 1], seconds, systems, references, names,
                           lengths, lat, settings, split=split, seed=seed,
                           adherence=adherence, bootstrap_samples=bootstrap_samples))
  return _results(scores, seeds, seconds, systems, references, names, lengths, lat, settings,
                  split=split, seed=seed, adherence=adherence,
                  bootstrap_samples=bootstrap_samples)


def _results(scores, seeds, seconds, systems, references, names, lengths, lat, settings, *,
             split, seed, adherence, bootstrap_samples) -> dict:
  """The JSON-ready results of the scenes scored so far (`seeds` = those scenes)."""
  boot = dict(samples=int(bootstrap_samples), seed=stats.BOOTSTRAP_SEED, level=stats.LEVEL)
  kw = dict(samples=boot["samples"], seed=boot["seed"], level=boot["level"])
  presets = [c for c in names if c in cases_lib.RECAM_PATHS]
  results = {}
  for row in scores:
    results[row] = {c: {n: summary.aggregate(scores[row][c][n], **kw) for n in lengths}
                    for c in names}
    if len(presets) > 1:
      results[row][summary.PRESETS_MEAN] = {
          n: summary.aggregate(summary.mean_over_cases([scores[row][c][n] for c in presets]),
                               **kw) for n in lengths}
  summary.add_beats(results, list(systems), list(references), **kw)
  t_short = pixel_frames(settings.short_latent_frames, settings.temporal_factor)
  t_draw = pixel_frames(latent_lengths(settings, ("long",))["long"], settings.temporal_factor)
  case_info = {c: dict(speed=cases_lib.case_speed(c, t_short, t_draw)) for c in names}
  if len(presets) > 1:
    case_info[summary.PRESETS_MEAN] = dict(speed="each preset's own (above)", of=presets)
  frames = {n: pixel_frames(f, settings.temporal_factor) for n, f in lat.items()}
  return dict(
      split=split, seeds=seeds, noise_seed=seed, adherence=adherence,
      settings=dataclasses.asdict(settings), cases=case_info,
      lengths={n: dict(latent_frames=f, frames=frames[n],
                       factor=round(frames[n] / t_short, 2)) for n, f in lat.items()},
      systems={n: dict(checkpoint=s.checkpoint, info=dict(s.info),
                       seconds=round(seconds[n], 3)) for n, s in systems.items()},
      references={n: dict(seconds=round(seconds[n], 3)) for n in references},
      bootstrap=boot, results=results)
