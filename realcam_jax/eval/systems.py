"""The systems `realcam eval` compares, each a function: source video + camera -> frames.

  student      the chunk-causal few-step student (`session.render_offline`: the same
               frames a `StreamingSession` streams), config `config`;
  teacher      the bidirectional teacher, Euler + CFG (`teacher_sampler.sample`) on the
               whole sequence, config `config.teacher` (or `config` for a teacher config);
  prefix       the same model class with the ReCamMaster prefix layout (the baseline);
  copy_source  the source video itself (no model).
  warp_source  the source warped to the target camera through the plane z = warp_depth of
               the source camera (`camera/warp.py`; geometry, no model): exact for camera
               rotations, the plane's approximation for translations.

Every generator has the signature
`generate(source u8[T, H, W, 3], poses f32[F, 4, 4], K f32[3, 3], seed,
source_poses=None) -> u8[T, H, W, 3]`
with one target pose per latent frame (pixel frame 4 j), camera-to-world relative to
the source camera's first frame, exactly what the models see in training and in
`StreamingSession`; `source_poses` (the source camera's, same frame) are used by a model
with `model.camera_reference = "pair"` (`camera_features.model_poses`). Model systems run
under one `jax.jit` per video length (the noise seed is a traced input, so scenes of one
length share a compilation).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

SYSTEMS = ("student", "teacher", "prefix", "copy_source", "warp_source")
MODEL_SYSTEMS = ("student", "teacher", "prefix")

Generate = Callable[..., np.ndarray]


def _model_poses(model_config, poses, source_poses):
  """f32[1, F, 4, 4]: the poses as the model is conditioned on them (host side)."""
  from realcam_jax.models.camera_features import model_poses
  poses = jnp.asarray(poses, jnp.float32)[None]
  if source_poses is not None:
    source_poses = jnp.asarray(source_poses, jnp.float32)[None]
  return model_poses(model_config, poses, source_poses)


def _warp_poses(poses, source_poses):
  """(target f32[1, F, 4, 4], source f32[1, F, 4, 4] or None): the raw poses, relative to
  the source's first frame, from which a "warped_source" model's anchor is warped."""
  return (jnp.asarray(poses, jnp.float32)[None],
          None if source_poses is None else jnp.asarray(source_poses, jnp.float32)[None])


@dataclasses.dataclass(frozen=True)
class System:
  """One system under evaluation.

  Attributes:
    name: one of SYSTEMS.
    generate: see the module docstring.
    checkpoint: the checkpoint path it was loaded from (None: random weights or no model).
    info: JSON-ready settings worth reporting (sampler steps, layout, ...).
  """
  name: str
  generate: Generate
  checkpoint: str | None = None
  info: dict = dataclasses.field(default_factory=dict)


def teacher_config(config):
  """The teacher's config of a student config (`config.teacher`), or a teacher config itself."""
  if "teacher" in config:
    return config.teacher
  if "sampler" in config and "model" in config:
    return config
  raise ValueError("the config has neither a `teacher` section nor a teacher `sampler`; "
                   "pass a student (configs/student.py:SIZE) or teacher config")


def prefix_config(config):
  """The prefix-layout baseline: the teacher's config as `configs/teacher.py:SIZE,prefix`
  builds it (prefix layout, sequential frame positions)."""
  c = teacher_config(config).copy_and_resolve_references()
  c.model.update(layout="prefix", pair_rope="sequential")
  return c


def copy_source() -> System:
  """The trivial baseline: the generated view is the source video."""
  return System("copy_source",
                lambda source, poses, k, seed, source_poses=None: np.asarray(source, np.uint8))


def warp_source(depth: float, temporal_factor: int) -> System:
  """The geometry baseline: the source seen through the plane `z = depth` (no model)."""
  from realcam_jax.camera.warp import warp_source_video

  def generate(source, poses, k, seed, source_poses=None):
    return warp_source_video(source, poses, source_poses, k, depth, temporal_factor)

  return System("warp_source", generate, None, dict(depth=float(depth)))


def vae_roundtrip(vae):
  """The VAE reference: the truth encoded and decoded by `vae` (what a perfect latent
  prediction would give). Returns `fn(truth u8[T, H, W, 3]) -> u8[T, H, W, 3]`, jitted
  once per length."""
  graphdef, state = nnx.split(vae)

  @jax.jit
  def run(state, video):
    model = nnx.merge(graphdef, state)
    return _to_uint8(model.decode(model.encode(_to_unit(video)).astype(jnp.float32)))

  return lambda truth: np.asarray(run(state, jnp.asarray(truth)[None])[0])


def _to_unit(frames_u8):
  return jnp.asarray(frames_u8, jnp.float32) / 127.5 - 1.0


def _to_uint8(frames):
  return jnp.clip(jnp.round((frames + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def student_system(config, graphdef, params, vae, checkpoint: str | None = None) -> System:
  """The student through `render_offline` (equal to streaming the same frames)."""
  from realcam_jax.inference import session
  vae_graphdef, vae_state = nnx.split(vae)

  def render(params, vae_state, source, poses, k, seed, warp_poses):
    vae = nnx.merge(vae_graphdef, vae_state)
    return session.render_offline(config, graphdef, params, vae, source, poses, k, seed=seed,
                                  warp_poses=warp_poses)

  fn = jax.jit(render)

  def generate(source, poses, k, seed, source_poses=None):
    out = fn(params, vae_state, jnp.asarray(source)[None],
             _model_poses(config.model, poses, source_poses),
             jnp.asarray(k, jnp.float32)[None], jnp.int32(seed), _warp_poses(poses, source_poses))
    return np.asarray(out[0])

  s = config.student
  return System("student", generate, checkpoint,
                dict(chunk_pairs=int(s.chunk_pairs), steps=len(tuple(s.timesteps)),
                     window_chunks=int(s.window_chunks), sink_chunks=int(s.sink_chunks),
                     max_frames=int(s.max_frames)))


def teacher_generate(tconfig, graphdef, vae_graphdef, params, vae_state, source_u8, poses, k,
                     key, warp_poses=None):
  """Pure teacher pipeline: VAE encode -> Euler/CFG sampling of the targets -> VAE decode.

  Args:
    source_u8: uint8[B, T, H, W, 3].
    poses: f32[B, F, 4, 4] target poses per latent frame (F = 1 + (T - 1) / 4).
    k: f32[B, 3, 3] pixel intrinsics.
    key: noise key.
    warp_poses: (target f32[B, F, 4, 4], source f32[B, F, 4, 4] or None) poses relative to
      the source's first frame, for the anchor of a "warped_source" model
      (`warp_anchor.warped_source`); None for other models.

  Returns:
    uint8[B, T, H, W, 3].
  """
  from realcam_jax.inference import teacher_sampler
  from realcam_jax.models.camera_features import camera_features
  vae = nnx.merge(vae_graphdef, vae_state)
  src = vae.encode(_to_unit(source_u8)).astype(jnp.float32)
  cam = camera_features(tconfig.model, poses, k, src.shape[2:4], vae.spatial_factor)
  from realcam_jax.models.warp_anchor import anchor_from_video
  model = nnx.merge(graphdef, params)
  anchor = anchor_from_video(tconfig.model, vae, source_u8, src, warp_poses[0], k, warp_poses[1])
  s = tconfig.sampler
  x0 = teacher_sampler.sample(model, src, cam, None, key, steps=int(s.steps),
                              shift=float(s.shift), cfg_scale=float(s.cfg_scale), anchor=anchor,
                              noise_scale=float(s.get("noise_scale", 1.0)))
  return _to_uint8(vae.decode(x0.astype(jnp.float32)))


def teacher_system(name: str, tconfig, graphdef, params, vae,
                   checkpoint: str | None = None) -> System:
  """The teacher (or, with a prefix-layout config, the prefix baseline)."""
  vae_graphdef, vae_state = nnx.split(vae)

  def run(params, vae_state, source, poses, k, seed, warp_poses):
    return teacher_generate(tconfig, graphdef, vae_graphdef, params, vae_state, source, poses,
                            k, jax.random.key(seed), warp_poses)

  fn = jax.jit(run)

  def generate(source, poses, k, seed, source_poses=None):
    out = fn(params, vae_state, jnp.asarray(source)[None],
             _model_poses(tconfig.model, poses, source_poses),
             jnp.asarray(k, jnp.float32)[None], jnp.int32(seed), _warp_poses(poses, source_poses))
    return np.asarray(out[0])

  s = tconfig.sampler
  return System(name, generate, checkpoint,
                dict(layout=str(tconfig.model.layout), steps=int(s.steps), shift=float(s.shift),
                     cfg_scale=float(s.cfg_scale), noise_scale=float(s.get("noise_scale", 1.0))))


def load_systems(config, names, checkpoints: dict, vae, *, seed: int = 0, out=None) -> dict:
  """Loads the systems `names` (in that order) sharing one VAE.

  Args:
    config: a student config (all systems) or a teacher config (teacher, prefix,
      copy_source).
    names: iterable of SYSTEMS entries.
    checkpoints: {system: path or None}; None = random weights (a warning is printed).
    vae: the VAE every model system encodes and decodes with.

  Returns:
    {name: System}.

  Raises:
    realcam_jax.inference.load.LoadError: a checkpoint cannot be used or the config
      does not fit the system.
  """
  from realcam_jax.inference import load
  systems = {}
  for name in names:
    path = checkpoints.get(name)
    if name == "copy_source":
      systems[name] = copy_source()
    elif name == "warp_source":
      from realcam_jax.models.warp_anchor import DEFAULT_WARP_DEPTH
      # Configs restored from checkpoints written before `model.warp_depth` existed (the
      # bundled demo checkpoints) have no such field: they get the demo rig's default.
      depth = teacher_config(config).model.get("warp_depth", DEFAULT_WARP_DEPTH)
      systems[name] = warp_source(float(depth), vae.temporal_factor)
    elif name == "student":
      if "student" not in config:
        raise load.LoadError("system 'student' needs a student config "
                             "(configs/student.py:SIZE); this config has no `student` section")
      cfg, graphdef, params = load.load_student(path, config, seed, out)
      _check_vae(vae, cfg, name)
      systems[name] = student_system(cfg, graphdef, params, vae, path)
    else:
      base = teacher_config(config) if name == "teacher" else prefix_config(config)
      cfg, graphdef, params = load.load_teacher(path, base, seed, out, what=name)
      if name == "prefix" and cfg.model.layout != "prefix":
        raise load.LoadError(f"--prefix {path}: that checkpoint was trained with "
                             f"layout={cfg.model.layout!r}; expected a prefix-layout teacher "
                             "(configs/teacher.py:SIZE,prefix)")
      _check_vae(vae, cfg, name)
      systems[name] = teacher_system(name, cfg, graphdef, params, vae, path)
  for name, system in systems.items():
    step = load.checkpoint_step(checkpoints.get(name))
    if step is not None:
      system.info["step"] = step       # the training step of the evaluated weights
  return systems


def _check_vae(vae, config, name):
  from realcam_jax.inference.load import LoadError
  if vae.z_dim != config.model.in_channels:
    raise LoadError(f"the VAE has {vae.z_dim} latent channels but the {name} expects "
                    f"{config.model.in_channels}; pass a matching --vae")
