"""Whole-video latency of the bidirectional teacher and the prefix baseline.

One video = VAE encode of the whole source -> `config.sampler.steps` Euler steps with
classifier-free guidance (both branches in one batched call) over all target latent
frames at once -> VAE decode; the same pipeline `realcam render` would need without
the student. The jitted function is compiled first (`lower().compile()`, timed
separately), then run once and timed.

Guard: before the whole video, one guided step is compiled and timed; when
`steps x step + VAE` exceeds `max_seconds` the run is skipped and the row says
"skipped: would take ~N s", with N labelled as extrapolated.

The estimate's VAE (`vae_mode`): "whole" times one encode + decode call on the whole
video; "chunks" times the streaming VAE over the same video (first frame, then 4 frames
per chunk to encode, one latent frame per chunk to decode: the way Wan runs its VAE,
the same FLOPs and outputs in constant memory, for full-size videos whose whole-video
VAE activations would not fit).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from realcam_jax.inference import teacher_sampler
from realcam_jax.inference.session import to_uint8, to_unit
from realcam_jax.models.camera_features import camera_features
from realcam_jax.train import state as st


def _inputs(vae, height: int, width: int, f: int, seed: int):
  """(source u8[1, T, H, W, 3], poses f32[1, F, 4, 4], K f32[1, 3, 3]) for F latent frames."""
  from realcam_jax.camera.intrinsics import intrinsics_from_fov
  t = 1 + vae.temporal_factor * (f - 1)
  rng = np.random.default_rng(seed)
  source = rng.integers(0, 256, (1, t, height, width, 3), dtype=np.uint8)
  poses = np.broadcast_to(np.eye(4, dtype=np.float32), (1, f, 4, 4)).copy()
  k = np.asarray(intrinsics_from_fov(60.0, width, height), np.float32)[None]
  return source, poses, k


def video_fn(config, graphdef, vae_graphdef):
  """Pure whole-video function `(params, vae_state, source_u8, poses, K, key) -> u8 video`."""
  s = config.sampler

  def run(params, vae_state, source_u8, poses, k, key):
    vae = nnx.merge(vae_graphdef, vae_state)
    lat = vae.encode(to_unit(source_u8)).astype(jnp.float32)
    cam = camera_features(config.model, poses, k, lat.shape[2:4], vae.spatial_factor)
    model = st.merge(graphdef, params)
    x0 = teacher_sampler.sample(model, lat, cam, None, key, steps=int(s.steps),
                                shift=float(s.shift), cfg_scale=float(s.cfg_scale))
    return to_uint8(vae.decode(x0))
  return run


def step_fn(config, graphdef):
  """One guided velocity evaluation (what each Euler step costs)."""
  def run(params, lat, cam, x, sigma):
    model = st.merge(graphdef, params)
    return teacher_sampler.teacher_velocity(model, lat, cam, None,
                                            float(config.sampler.cfg_scale))(x, sigma)
  return run


def vae_fn(vae_graphdef):
  def run(vae_state, source_u8):
    vae = nnx.merge(vae_graphdef, vae_state)
    return to_uint8(vae.decode(vae.encode(to_unit(source_u8)).astype(jnp.float32)))
  return run


_VAE_CHUNKS_S: dict = {}     # (id(vae), shape) -> seconds: both systems share the VAE


def vae_chunks_s(vae, source) -> float:
  """Seconds of the streaming VAE round trip of `source` u8[1, T, H, W, 3] (compiled on a
  first pass, timed on a second; remembered per VAE and shape within the process, so the
  teacher and the prefix baseline do not compile it twice)."""
  key = (id(vae), tuple(source.shape))
  if key not in _VAE_CHUNKS_S:
    _VAE_CHUNKS_S[key] = _vae_chunks_s(vae, source)
  return _VAE_CHUNKS_S[key]


def _vae_chunks_s(vae, source) -> float:
  from realcam_jax.models import vae as vae_lib
  fns = vae_lib.make_stream_fns(vae)
  video = to_unit(source)

  def once():
    lat = jnp.concatenate(list(vae_lib.encode_chunks(vae, video, fns=fns)), axis=1)
    return jax.block_until_ready([to_uint8(f) for f in vae_lib.decode_chunks(vae, lat, fns=fns)])
  once()
  t0 = time.perf_counter()
  once()
  return time.perf_counter() - t0


def _compile(fn, *args):
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - t0


def _timed(compiled, *args, repeats: int = 1) -> float:
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def estimate(config, graphdef, params, vae, source, poses, k, vae_mode: str = "whole") -> dict:
  """Measured single guided step and VAE round trip; `estimate_s` = steps x step + VAE."""
  vae_graphdef, vae_state = nnx.split(vae)
  if vae_mode == "chunks":
    t0 = time.perf_counter()
    vae_s = vae_chunks_s(vae, source)
    vae_compile = max(time.perf_counter() - t0 - 2 * vae_s, 0.0)
  elif vae_mode == "whole":
    vae_c, vae_compile = _compile(vae_fn(vae_graphdef), vae_state, source)
    vae_s = _timed(vae_c, vae_state, source, repeats=2)
  else:
    raise ValueError(f"vae_mode {vae_mode!r}: expected 'whole' or 'chunks'")
  lat = jax.eval_shape(lambda v, x: nnx.merge(vae_graphdef, v).encode(to_unit(x)), vae_state,
                       source)
  lat = jnp.zeros(lat.shape, jnp.float32)
  cam = camera_features(config.model, poses, k, lat.shape[2:4], vae.spatial_factor)
  sigma = jnp.full(lat.shape[:2], 0.5, jnp.float32)
  step_c, step_compile = _compile(step_fn(config, graphdef), params, lat, cam, lat, sigma)
  step_s = _timed(step_c, params, lat, cam, lat, sigma, repeats=2)
  steps = int(config.sampler.steps)
  return {"step_s": step_s, "vae_s": vae_s, "vae_mode": vae_mode, "steps": steps,
          "estimate_s": steps * step_s + vae_s,
          "probe_compile_s": step_compile + vae_compile}


def bench_offline(config, vae, height: int, width: int, multiples: list[int], *,
                  frames_1x: int, system: str, max_seconds: float, seed: int = 0,
                  progress=None, vae_mode: str = "whole") -> dict:
  """Whole-video latency of the teacher described by `config` (random weights).

  `frames_1x` latent frames make the 1x length (the student's training length).

  Returns dict(system, layout, steps, cfg_scale, lengths: [per multiple: latent_frames,
  frames, estimate (measured step, extrapolated total), and either video_s / compile_s /
  fps or skipped (str)]).
  """
  from realcam_jax.models.realcam import RealCamDiT
  graphdef, params = st.split_model(RealCamDiT(config.model, rngs=nnx.Rngs(seed)))
  vae_graphdef, vae_state = nnx.split(vae)
  rows = []
  for m in sorted(multiples):
    source, poses, k = _inputs(vae, height, width, m * frames_1x, seed)
    est = estimate(config, graphdef, params, vae, source, poses, k, vae_mode)
    row = {"multiple": m, "latent_frames": m * frames_1x,
           "frames": int(source.shape[1]), "estimate": est}
    if est["estimate_s"] > max_seconds:
      row["skipped"] = (f"skipped: would take ~{est['estimate_s']:.0f} s (extrapolated: "
                        f"{est['steps']} steps x {est['step_s']:.3f} s measured per step + "
                        f"{est['vae_s']:.2f} s VAE) > --max-seconds {max_seconds:g}")
    else:
      args = (params, vae_state, source, poses, k, jax.random.key(seed))
      compiled, compile_s = _compile(video_fn(config, graphdef, vae_graphdef), *args)
      video_s = _timed(compiled, *args)
      row.update(video_s=video_s, compile_s=compile_s, fps=source.shape[1] / video_s)
    rows.append(row)
    if progress is not None:
      progress(row)
  s = config.sampler
  return {"system": system, "layout": config.model.layout, "steps": int(s.steps),
          "cfg_scale": float(s.cfg_scale), "shift": float(s.shift), "lengths": rows}


def whole_video_s(row: dict) -> tuple[float, bool]:
  """(seconds for the whole video, extrapolated?) of one offline row."""
  if "video_s" in row:
    return row["video_s"], False
  return row["estimate"]["estimate_s"], True
