"""The held-out cases `realcam eval` scores: scene settings, lengths, target paths at a
fixed per-frame camera speed, and the rendered truth of each.

Scenes are clips of a split of the synthetic dataset (`tfds_builder.SPLIT_SEED_BASE`).
Lengths (pixel frames T = 1 + 4 (F - 1), F latent frames, a multiple of the student's
chunk size K):

  shorter  about 0.6x the training length (whole chunks, below it)
  short    the training length (`data.latent_frames`)
  long     about 2.2x the training length

**Fixed camera speed.** Every length of a scene is cut from one longer scene: the clip's
cameras are drawn by the rig for the `long` length (`sample_clip(seed, T_long)`), and a
video of T frames is its first T frames, so the source and the clip's target camera move
at the same per-frame speed at every length (the longer path extends the shorter one;
the 1x clip moves at (T_short - 1) / (T_long - 1) of the speed of the training clips,
whose rig path spans T_short frames). Preset paths move at their nominal
(`realcam camera list`, ReCamMaster) magnitude per T_short - 1 frames, so the 1x video is
the preset exactly and the others cut or extend it at the same speed.

Cases (`--cases`):

  identity   the target camera follows the source camera exactly (target poses = source
             poses, relative to the source's first frame): the truth is the source video.
             (`heldout_view(..., "static", start="source")` equals this only when the
             source camera does not move.)
  <preset>   one of ReCamMaster's ten presets (`data.rig.RECAM_PATHS`) run from the
             source camera's first pose; "presets" selects all ten.
  clip       the clip's own target camera 0 (15-75 deg from the source).
  loop       a true loop: from the clip's target camera 0, out along a ReCamMaster preset
             (drawn per scene) at the preset speed for (T - 1) / 2 frames and back at the
             same speed, while scene time runs on.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from realcam_jax.camera import presets
from realcam_jax.camera.pose import relative_to
from realcam_jax.data import heldout, synthetic
from realcam_jax.data.rig import RECAM_PATHS, trajectory_params
from realcam_jax.eval import fidelity, geometry

LENGTHS = ("shorter", "short", "long")
SHORTER_FACTOR = 0.6
LONG_FACTOR = 2.2
CASE_GROUPS = ("identity", "presets", "clip", "loop")
CASE_NAMES = ("identity",) + RECAM_PATHS + ("clip", "loop")
PRESET_DISTANCE = 4.0          # look-at distance of the translate / arc presets (their default)
_LOOP_SEED = 0x100B


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
  """One scene, one target path, one length: what every system gets and the truth.

  Attributes:
    seed: the clip seed.
    case: a CASE_NAMES entry.
    length: a LENGTHS entry.
    source: u8[T, H, W, 3] source video.
    target: u8[T, H, W, 3] ground-truth target view.
    static_mask: bool[T, H, W] static pixels of the truth.
    object_mask: bool[T, H, W] pixels whose truth sees an object, dilated 2 px.
    target_c2w: f32[T, 4, 4] world target poses (for loop pairs and adherence).
    latent_poses: f32[F, 4, 4] target poses per latent frame relative to the source's
      first frame (the model input).
    source_latent_poses: f32[F, 4, 4] the source camera's, in the same frame (for
      `model.camera_reference = "pair"`).
    intrinsics: f32[3, 3] pixel intrinsics.
    loop_pairs: int[P, 2] frame pairs at the same target pose (P may be 0).
    view_change_deg: rotation between the source and target cameras at frame 0.
  """
  seed: int
  case: str
  length: str
  source: np.ndarray
  target: np.ndarray
  static_mask: np.ndarray
  object_mask: np.ndarray
  target_c2w: np.ndarray
  latent_poses: np.ndarray
  source_latent_poses: np.ndarray
  intrinsics: np.ndarray
  loop_pairs: np.ndarray
  view_change_deg: float = float("nan")


def expand_cases(names) -> list[str]:
  """CASE_NAMES entries for `names` (groups of CASE_GROUPS or single presets), in order.

  Raises:
    ValueError: naming the unknown entries and what is expected.
  """
  out = []
  for n in names:
    if n == "presets":
      out += list(RECAM_PATHS)
    elif n in CASE_NAMES:
      out.append(n)
    else:
      raise ValueError(f"unknown case {n!r}; expected some of {', '.join(CASE_GROUPS)} or a "
                       f"preset ({', '.join(RECAM_PATHS)})")
  if not out:
    raise ValueError(f"no case given; expected some of {', '.join(CASE_GROUPS)}")
  return list(dict.fromkeys(out))


def pixel_frames(latent_frames: int, temporal_factor: int = 4) -> int:
  """T = 1 + r (F - 1): pixel frames of F latent frames (causal VAE)."""
  return 1 + temporal_factor * (latent_frames - 1)


def latent_lengths(settings: SceneSettings, names=LENGTHS) -> dict:
  """{length name: latent frames F}, every F a multiple of the chunk size K.

  long / shorter: the F whose pixel length is nearest to LONG_FACTOR / SHORTER_FACTOR x
  the short pixel length (ties to the longer; shorter is below the short F, at least one
  chunk).
  """
  f, k, r = settings.short_latent_frames, settings.chunk_pairs, settings.temporal_factor

  def nearest(factor, cands):
    want = factor * pixel_frames(f, r)
    return min(cands, key=lambda n: (abs(pixel_frames(n, r) - want), -n))

  table = {"shorter": nearest(SHORTER_FACTOR, range(k, max(f, k + 1), k)), "short": f,
           "long": nearest(LONG_FACTOR, range(k, 4 * f + k, k))}
  bad = [n for n in names if n not in table]
  if bad:
    raise ValueError(f"unknown lengths {bad}; expected some of {LENGTHS}")
  if "shorter" in names and table["shorter"] >= f:
    raise ValueError(f"no length shorter than the training length of {f} latent frames is a "
                     f"whole number of {k}-frame chunks")
  return {n: table[n] for n in names}


def scene_seeds(split: str, num_scenes: int, seed_offset: int = 0) -> list[int]:
  """The first `num_scenes` clip seeds of a dataset split (as `tfds_builder` renders them)."""
  return [seed_offset + heldout.split_seed(i, split) for i in range(num_scenes)]


# ----------------------------------------------------------------------------- camera paths

def _nominal(name: str) -> tuple[dict, str]:
  """A ReCamMaster preset's nominal parameters and the name of its magnitude parameter."""
  if name not in RECAM_PATHS:
    raise ValueError(f"preset {name!r} has no fixed-speed form; expected one of "
                     f"{', '.join(RECAM_PATHS)}")
  params = trajectory_params(name, np.random.default_rng(0), PRESET_DISTANCE, 1.0)
  return params, ("degrees" if "degrees" in params else "distance")


def preset_speed(name: str, short_frames: int) -> tuple[float, str]:
  """(per-frame speed, unit) of preset `name`: its nominal magnitude per short_frames - 1."""
  params, key = _nominal(name)
  return params[key] / max(short_frames - 1, 1), ("deg/frame" if key == "degrees" else "m/frame")


def preset_poses(name: str, num_frames: int, short_frames: int) -> np.ndarray:
  """f64[T, 4, 4] preset poses (relative to the start) at the fixed speed.

  Frame k is where the preset is at progress k / (short_frames - 1): the nominal motion at
  frame short_frames - 1, cut before it or extended past it at the same speed (the
  ReCamMaster presets are linear in progress).
  """
  params, key = _nominal(name)
  scale = (num_frames - 1) / max(short_frames - 1, 1)
  return presets.get_trajectory(name, num_frames, **dict(params, **{key: params[key] * scale}))


def loop_base(seed: int) -> str:
  """The ReCamMaster preset the scene's true loop goes out along (drawn per seed)."""
  return str(np.random.default_rng([int(seed), _LOOP_SEED]).choice(RECAM_PATHS))


def loop_poses(base: str, num_frames: int, short_frames: int) -> np.ndarray:
  """f64[T, 4, 4] out-and-back loop along `base` at its fixed speed; pose T-1 == pose 0.

  Out for (T - 1) / 2 frames at `preset_speed(base)`, back at the same speed.
  """
  params, key = _nominal(base)
  scale = (num_frames - 1) / 2 / max(short_frames - 1, 1)
  rel = presets.get_trajectory("out_and_back", num_frames, base=base,
                               **dict(params, **{key: params[key] * scale}))
  rel[-1] = rel[0]
  return rel


def case_speed(case: str, short_frames: int, draw_frames: int) -> str:
  """The per-frame camera speed of a case, in words (for the tables)."""
  if case == "identity":
    return "the source camera's (the rig's source path drawn over the long video)"
  if case == "clip":
    return (f"the rig's target path drawn over {draw_frames} frames "
            f"({(short_frames - 1) / max(draw_frames - 1, 1):.2f}x the training clips' speed)")
  if case == "loop":
    return "out and back along a ReCamMaster preset (per scene) at its preset speed"
  v, unit = preset_speed(case, short_frames)
  return f"{v:.4g} {unit}"


# ----------------------------------------------------------------------------- rendering

def _latent(rel: np.ndarray, r: int) -> np.ndarray:
  return rel[::r].astype(np.float32)


def make_cases(seed: int, settings: SceneSettings, cases, lengths: dict) -> list[Case]:
  """Renders one scene's cases at every length.

  Args:
    seed: clip seed.
    settings: from `runner.scene_settings`.
    cases: CASE_NAMES entries (see `expand_cases`).
    lengths: {length name: latent frames F} (from `latent_lengths`).

  Returns:
    [Case] in `cases` x `lengths` order.
  """
  st = settings
  r = st.temporal_factor
  t_short = pixel_frames(st.short_latent_frames, r)
  t_draw = pixel_frames(latent_lengths(st, ("long",))["long"], r)
  frames = {n: pixel_frames(f, r) for n, f in lengths.items()}
  t_draw = max([t_draw] + list(frames.values()))
  kw = dict(fps=st.fps, scene=st.scene, rig=st.rig)
  clip = synthetic.sample_clip(seed, t_draw, st.height, st.width, st.num_target_cameras, **kw)
  world = synthetic.make_scene(seed, **(st.scene or {}))
  k = np.asarray(clip["intrinsics"], np.float32)
  src_c2w = np.asarray(clip["source_c2w"], np.float64)
  ref = src_c2w[0]
  src_latent = _latent(relative_to(src_c2w, ref), r)
  view_change = float(clip["view_change"][0, 0])
  out = []

  def add(case, length, target, mask, depth, c2w, latent, change):
    t = len(target)
    out.append(Case(
        seed=int(seed), case=case, length=length, source=clip["source_rgb"][:t],
        target=np.ascontiguousarray(target), static_mask=np.asarray(mask, bool),
        object_mask=fidelity.object_region(depth, c2w, k),
        target_c2w=np.asarray(c2w, np.float32), latent_poses=latent,
        source_latent_poses=src_latent[:len(latent)], intrinsics=k,
        loop_pairs=geometry.find_loop_pairs(c2w), view_change_deg=change))

  for case in cases:
    if case == "loop":
      base = clip["target_c2w"][0, 0].astype(np.float64)
      for length, t in frames.items():
        c2w = (base @ loop_poses(loop_base(seed), t, t_short)).astype(np.float32)
        c2w[-1] = c2w[0]
        img = synthetic.render(world, c2w, k, clip["times"][:t], st.height, st.width)
        add(case, length, img["rgb"], img["static_mask"], img["depth"], c2w,
            _latent(relative_to(c2w.astype(np.float64), ref), r), view_change)
      continue
    if case == "identity":
      c2w, rgb = src_c2w, clip["source_rgb"]
      mask, depth, change = clip["source_static_mask"], clip["source_depth"], 0.0
    elif case == "clip":
      c2w, rgb = clip["target_c2w"][0].astype(np.float64), clip["target_rgb"][0]
      mask, depth, change = clip["target_static_mask"][0], clip["target_depth"][0], view_change
    elif case in RECAM_PATHS:
      c2w = ref @ preset_poses(case, t_draw, t_short)
      img = synthetic.render(world, c2w.astype(np.float32), k, clip["times"], st.height,
                             st.width)
      rgb, mask, depth, change = img["rgb"], img["static_mask"], img["depth"], 0.0
    else:
      raise ValueError(f"unknown case {case!r}; expected one of {', '.join(CASE_NAMES)}")
    rel = relative_to(c2w, ref)
    for length, t in frames.items():
      add(case, length, rgb[:t], mask[:t], depth[:t], c2w[:t], _latent(rel[:t], r), change)
  return out
