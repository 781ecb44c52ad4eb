"""`realcam eval` as a library: systems x held-out synthetic scenes x lengths -> metrics.

    results = run_eval(systems, scene_settings(config, vae), split="test", num_scenes=8)

Scenes are the clips of a split of the synthetic dataset, rendered directly with the
dataset's seeds (`tfds_builder.SPLIT_SEED_BASE`), so with the settings of the data
the model was trained on they are exactly the held-out test clips. For each scene and
length every system sees the same source video, target trajectory and intrinsics:

  shorter  about 0.6x the training length in pixel frames (whole student chunks,
         shorter than the training length);
  short  the training length (`data.latent_frames` latent frames; the test clip itself);
  long   about 2.2x the training length in pixel frames (the length-generalisation
         test), a whole number of student chunks;
  loop   a true loop of twice the training length: the source is the scene's source
         camera; the target camera starts at the clip's target camera 0, follows a
         closed preset ("out_and_back", parameters drawn per seed) and returns to its
         start exactly, while scene time runs on (`synthetic.render_true_loop` with
         start="target").

Lengths are latent frame counts F (a multiple of the student's chunk size K), pixel
frames T = 1 + 4 (F - 1). The target is target camera 0 of each clip. Metrics
(`realcam_jax.eval.metrics`, docs/metrics.md): PSNR / SSIM of the whole frame and of
the target's static region, temporal flicker (ratio to the ground truth's), loop-closure
error on frame pairs at the same target pose (`geometry.find_loop_pairs`; every length
whose trajectory has such pairs, always the loop), optionally camera adherence.
Scene means are means over scenes; NaN where a metric is undefined for every scene.
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

from realcam_jax.camera.pose import relative_to
from realcam_jax.data import heldout, synthetic, tfds_builder
from realcam_jax.eval import geometry, metrics

LENGTHS = ("shorter", "short", "long", "loop")
SHORTER_FACTOR = 0.6
LONG_FACTOR = 2.2
LOOP_FACTOR = 2
LOOP_TRAJECTORY = "out_and_back"
SPLITS = tuple(tfds_builder.SPLIT_SEED_BASE)
# Scalar per-scene metrics, in table order.
METRICS = ("psnr", "ssim", "psnr_static", "ssim_static", "flicker_ratio", "flicker",
           "flicker_gt", "loop_mae", "loop_psnr", "rot_err_deg", "trans_err_deg")


@dataclasses.dataclass(frozen=True)
class SceneSettings:
  """What the held-out scenes look like (the dataset settings of the trained model).

  Attributes:
    height, width: pixel frame size.
    fps: scene frames per second.
    scene, rig: overrides of `synthetic.DEFAULT_SCENE` / `DEFAULT_RIG`.
    seed_offset: the dataset's `data.seed_offset`.
    num_target_cameras: target cameras per clip (the rig draws them all; camera 0 is
      evaluated).
    short_latent_frames: the training length F in latent frames.
    chunk_pairs: student chunk size K (lengths are multiples of it; 1 without a student).
    temporal_factor: VAE temporal downsampling (pixel frames per latent frame).
  """
  height: int
  width: int
  fps: float
  scene: dict
  rig: dict
  seed_offset: int
  num_target_cameras: int
  short_latent_frames: int
  chunk_pairs: int
  temporal_factor: int


@dataclasses.dataclass(frozen=True)
class Case:
  """One scene at one length: what every system gets and what it is scored against.

  Attributes:
    seed: the clip seed.
    length: "shorter" | "short" | "long" | "loop".
    source: u8[T, H, W, 3] source video.
    target: u8[T, H, W, 3] ground-truth target view.
    static_mask: bool[T, H, W] static pixels of the target view.
    target_c2w: f32[T, 4, 4] world target poses (for loop pairs and adherence).
    latent_poses: f32[F, 4, 4] target poses per latent frame relative to the source's
      first frame (the model input).
    intrinsics: f32[3, 3] pixel intrinsics.
    loop_pairs: int[P, 2] frame pairs at the same target pose (P may be 0).
    view_change_deg: rotation between the source and target cameras at frame 0.
  """
  seed: int
  length: str
  source: np.ndarray
  target: np.ndarray
  static_mask: np.ndarray
  target_c2w: np.ndarray
  latent_poses: np.ndarray
  intrinsics: np.ndarray
  loop_pairs: np.ndarray
  view_change_deg: float = float("nan")


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


def pixel_frames(latent_frames: int, temporal_factor: int = 4) -> int:
  """T = 1 + r (F - 1): pixel frames of F latent frames (causal VAE)."""
  return 1 + temporal_factor * (latent_frames - 1)


def latent_lengths(settings: SceneSettings, names=LENGTHS) -> dict:
  """{length name: latent frames F}, every F a multiple of the chunk size K.

  long / shorter: the F whose pixel length is nearest to LONG_FACTOR / SHORTER_FACTOR x
  the short pixel length (ties to the longer; shorter is below the short F, at least one
  chunk); loop: LOOP_FACTOR x the short F.
  """
  f, k, r = settings.short_latent_frames, settings.chunk_pairs, settings.temporal_factor

  def nearest(factor, cands):
    want = factor * pixel_frames(f, r)
    return min(cands, key=lambda n: (abs(pixel_frames(n, r) - want), -n))

  table = {"shorter": nearest(SHORTER_FACTOR, range(k, max(f, k + 1), k)), "short": f,
           "long": nearest(LONG_FACTOR, range(k, 4 * f + k, k)), "loop": LOOP_FACTOR * f}
  if "shorter" in names and table["shorter"] >= f:
    raise ValueError(f"no length shorter than the training length of {f} latent frames is a "
                     f"whole number of {k}-frame chunks")
  return {n: table[n] for n in names}


def scene_seeds(split: str, num_scenes: int, seed_offset: int = 0) -> list[int]:
  """The first `num_scenes` clip seeds of a dataset split (as `tfds_builder` renders them)."""
  return [seed_offset + heldout.split_seed(i, split) for i in range(num_scenes)]


def make_case(seed: int, length: str, latent_frames: int, settings: SceneSettings) -> Case:
  """Renders one scene at one length (see the module docstring)."""
  st = settings
  t = pixel_frames(latent_frames, st.temporal_factor)
  kw = dict(fps=st.fps, scene=st.scene, rig=st.rig)
  clip = synthetic.sample_clip(seed, t, st.height, st.width, st.num_target_cameras, **kw)
  if length == "loop":
    loop = synthetic.render_true_loop(seed, t, st.height, st.width, trajectory=LOOP_TRAJECTORY,
                                      start="target", num_target_cameras=st.num_target_cameras,
                                      **kw)
    target, mask, c2w = loop["rgb"], loop["static_mask"], loop["c2w"]
  else:
    target, mask, c2w = clip["target_rgb"][0], clip["target_static_mask"][0], clip["target_c2w"][0]
  rel = relative_to(np.asarray(c2w, np.float64), np.asarray(clip["source_c2w"][0], np.float64))
  return Case(seed=int(seed), length=length, source=clip["source_rgb"], target=target,
              static_mask=np.asarray(mask, bool), target_c2w=np.asarray(c2w, np.float32),
              latent_poses=rel[::st.temporal_factor].astype(np.float32),
              intrinsics=np.asarray(clip["intrinsics"], np.float32),
              loop_pairs=geometry.find_loop_pairs(c2w),
              view_change_deg=float(clip["view_change"][0, 0]))


# ----------------------------------------------------------------------------- scoring

def _masked(fn, pred, gt, mask, border: int = 0) -> metrics.FrameMetric | None:
  """`fn` over the frames whose mask (cropped by `border`) selects a pixel; None if none."""
  h, w = mask.shape[1:]
  inner = mask[:, border:h - border, border:w - border] if border else mask
  keep = inner.reshape(len(mask), -1).any(axis=1)
  if not keep.any():
    return None
  return fn(pred[keep], gt[keep], mask[keep])


def score(pred: np.ndarray, case: Case, *, adherence: bool = False) -> dict:
  """Metrics of one generated video against its case.

  Returns:
    dict with the METRICS scalars (NaN where undefined: no static pixel, no loop pair,
    no adherence) and `per_frame_psnr` f64[T].
  """
  gt, mask = case.target, case.static_mask
  if pred.shape != gt.shape:
    raise ValueError(f"{case.length} video of scene {case.seed}: generated shape "
                     f"{pred.shape} != ground truth {gt.shape}")
  nan = float("nan")
  p = metrics.psnr(pred, gt)
  out = dict(psnr=p.mean, ssim=metrics.ssim(pred, gt).mean, per_frame_psnr=p.per_frame)
  ps = _masked(metrics.psnr, pred, gt, mask)
  ss = _masked(metrics.ssim, pred, gt, mask, border=metrics.SSIM_WINDOW // 2)
  out["psnr_static"] = nan if ps is None else ps.mean
  out["ssim_static"] = nan if ss is None else ss.mean
  fl = metrics.temporal_flicker(pred, gt)
  out.update(flicker=fl.pred, flicker_gt=fl.gt, flicker_ratio=fl.ratio)
  out["loop_mae"] = out["loop_psnr"] = nan
  pairs = case.loop_pairs
  if len(pairs):
    both = mask[pairs[:, 0]] & mask[pairs[:, 1]]
    pairs = pairs[both.reshape(len(pairs), -1).any(axis=1)]
  if len(pairs):
    lc = metrics.loop_closure_error(pred, pairs, mask)
    out.update(loop_mae=lc.mean_mae, loop_psnr=lc.mean_psnr)
  out["rot_err_deg"] = out["trans_err_deg"] = nan
  if adherence:
    from realcam_jax.eval import camera_adherence
    t = len(pred)
    res = camera_adherence.camera_adherence(pred, case.target_c2w, case.intrinsics,
                                            stride=max(1, (t - 1) // 8), mask=mask)
    out.update(rot_err_deg=res.median_rot_err_deg, trans_err_deg=res.median_trans_err_deg)
  return out


# Buckets of the source -> target rotation at frame 0 (the rig draws 15-75 degrees of
# azimuth change): copying the source degrades as the change grows (design.md §8).
VIEW_CHANGE_EDGES = (35.0, 55.0)


def view_change_bucket(deg: float) -> str:
  """'<35°', '35-55°' or '>=55°' for the default edges."""
  lo, hi = VIEW_CHANGE_EDGES
  return f"<{lo:g}°" if deg < lo else (f"{lo:g}-{hi:g}°" if deg < hi else f">={hi:g}°")


def _by_view_change(scores: list[dict]) -> dict:
  """{bucket: {scenes, psnr, ssim}} over the scenes whose view change falls in it."""
  out = {}
  for s in scores:
    out.setdefault(view_change_bucket(s["view_change_deg"]), []).append(s)
  order = [view_change_bucket(x) for x in (0.0, VIEW_CHANGE_EDGES[0], VIEW_CHANGE_EDGES[1])]
  return {b: dict(scenes=len(out[b]), psnr=_mean([s["psnr"] for s in out[b]]),
                  ssim=_mean([s["ssim"] for s in out[b]])) for b in order if b in out}


def _mean(values) -> float:
  """Mean over scenes, ignoring NaN (NaN if all are); +inf stays inf."""
  v = np.asarray(values, np.float64)
  v = v[~np.isnan(v)]
  return float(v.mean()) if v.size else float("nan")


def aggregate(scores: list[dict]) -> dict:
  """Scene means of the METRICS, per-frame PSNR averaged over scenes, and per-scene values."""
  out = {m: _mean([s[m] for s in scores]) for m in METRICS}
  out["per_frame_psnr"] = [float(x) for x in np.mean([s["per_frame_psnr"] for s in scores], 0)]
  out["scenes"] = [{"seed": s["seed"], "view_change_deg": float(s["view_change_deg"]),
                    **{m: float(s[m]) for m in METRICS}} for s in scores]
  out["by_view_change"] = _by_view_change(scores)
  return out


# ----------------------------------------------------------------------------- the run

def run_eval(systems: dict, settings: SceneSettings, *, split: str = "test",
             num_scenes: int = 8, lengths=LENGTHS, seed: int = 0, adherence: bool = False,
             progress: bool = True, keep_videos: dict | None = None) -> dict:
  """Runs every system on the same scenes and lengths; returns the results dict.

  Args:
    systems: {name: `systems.System`} (see `systems.load_systems`).
    settings: from `scene_settings`.
    split: dataset split whose seeds give the scenes ("test": held out).
    num_scenes: how many clips of the split (its first ones).
    lengths: subset of LENGTHS.
    seed: noise seed; scene i uses seed + i for every system and length.
    adherence: also measure camera adherence (slow: feature matching per frame).
    progress: tqdm bar over scenes on stderr.
    keep_videos: if a dict, filled with the first scene's videos per length,
      `{length: {"source": u8[T,H,W,3], <system>: ..., "truth": ...}}` (for
      `report.write_report(..., videos=)`; kept out of the JSON-ready results).

  Returns:
    JSON-ready dict: `settings`, `lengths` ({name: {latent_frames, frames}}), `seeds`,
    `systems` ({name: {checkpoint, info, seconds}}) and `results`
    ({system: {length: aggregate(...)}}); see docs/metrics.md.
  """
  from tqdm import tqdm
  bad = [n for n in lengths if n not in LENGTHS]
  if bad or not lengths:
    raise ValueError(f"unknown lengths {bad}; expected some of {LENGTHS}")
  if num_scenes < 1:
    raise ValueError(f"num_scenes={num_scenes}: expected >= 1")
  seeds = scene_seeds(split, num_scenes, settings.seed_offset)
  lat = latent_lengths(settings, tuple(lengths))
  scores = {s: {n: [] for n in lengths} for s in systems}
  seconds = {s: 0.0 for s in systems}
  for i, clip_seed in enumerate(tqdm(seeds, desc="eval", unit="scene", file=sys.stderr,
                                     disable=not progress)):
    for length in lengths:
      case = make_case(clip_seed, length, lat[length], settings)
      keep = keep_videos is not None and i == 0
      if keep:
        keep_videos[length] = {"source": case.source}
      for name, system in systems.items():
        t0 = time.perf_counter()
        pred = np.asarray(system.generate(case.source, case.latent_poses, case.intrinsics,
                                          seed + i))
        seconds[name] += time.perf_counter() - t0
        if keep:
          keep_videos[length][name] = pred
        s = score(pred, case, adherence=adherence)
        scores[name][length].append(dict(s, seed=clip_seed, view_change_deg=case.view_change_deg))
      if keep:
        keep_videos[length]["truth"] = case.target
  return dict(
      split=split, seeds=seeds, noise_seed=seed, adherence=adherence,
      settings=dataclasses.asdict(settings),
      lengths={n: dict(latent_frames=f, frames=pixel_frames(f, settings.temporal_factor))
               for n, f in lat.items()},
      systems={n: dict(checkpoint=s.checkpoint, info=dict(s.info),
                       seconds=round(seconds[n], 3)) for n, s in systems.items()},
      results={n: {length: aggregate(v) for length, v in per.items()}
               for n, per in scores.items()})
