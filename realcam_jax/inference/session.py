"""`StreamingSession`: push source frames, steer the camera, pull generated frames.

One chunk = K latent frame pairs. In pixel frames a chunk is `1 + 4 (K - 1)` frames for
the first chunk of a stream (the causal VAE maps frame 0 to latent 0 on its own) and
`4 K` frames afterwards. Each chunk is one jitted, fixed-shape function
(`chunk_step`): streaming VAE encode of the source chunk -> few-step denoising of the
target chunk against the KV cache -> t = 0 commit -> streaming VAE decode. Caches
are pytrees passed in and returned. XLA compiles the first-chunk and the steady-state
shapes once each; the JAX persistent compilation cache (`enable_compilation_cache`)
makes a second start fast.

Camera: a `CameraController` (realcam_jax/inference/camera_control.py) owns the target
path in pixel-frame time. Latent frame j uses the pose at pixel frame 4 j (one pose
per latent frame, design.md §3); a change made while chunk c is being generated takes
effect from chunk c + 1 on (frames already generated never change).

Chunk c draws its noise from `fold_in(key, c)`, exactly as `student.generate_video`,
so a session and the offline `render_offline` give the same frames. (`noise_period=N`
reuses chunk c mod N's noise instead: a looping input then repeats exactly, which the
drift benchmark `bench/stream.py` needs.)

Length: with a rolling window (`student.window_chunks > 0`) a stream has no length
limit and every chunk sees its history at the same bounded positions
(`inference/kv_cache.py`), so chunk 100,000 behaves as chunk 100. The unlimited cache
(`window_chunks = 0`) holds `max_frames` latent frames (default `student.max_frames`)
exactly; pushing past it raises ValueError naming those fields.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from realcam_jax.inference import student as student_inf
from realcam_jax.inference.camera_control import CameraController
from realcam_jax.models import causal
from realcam_jax.models import vae as vae_lib
from realcam_jax.models.camera_features import camera_features
from realcam_jax.models.warp_anchor import anchor_for, anchor_from_video


def enable_compilation_cache(path: str | None = None) -> str:
  """Turns on JAX's persistent compilation cache (default ~/.cache/realcam_jax/xla)."""
  path = path or os.path.join(os.path.expanduser("~"), ".cache", "realcam_jax", "xla")
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  return path


def to_unit(frames_u8):
  return jnp.asarray(frames_u8, jnp.float32) / 127.5 - 1.0


def to_uint8(frames):
  return jnp.clip(jnp.round((frames + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def chunk_step(config, student_graphdef, vae_graphdef, student_params, vae_state, caches,
               frames_u8, target_poses, intrinsics, text, key):
  """One streaming chunk. Pure; jit with `config` and the graphdefs static.

  Args:
    caches: (vae encode cache, student KV cache, vae decode cache).
    frames_u8: source frames uint8[B, T, H, W, 3] (T = 1 + 4(K-1) first, 4K later).
    target_poses: f32[B, K, 4, 4] target c2w per latent frame, relative to the source
      camera's first frame.
    intrinsics: f32[B, 3, 3] pixel intrinsics of the source video.
    text: [B, Lt, Dt] or None.
    key: this chunk's key (`fold_in(session_key, chunk_index)`).

  Returns:
    (caches, generated uint8[B, T, H, W, 3], target latents f32[B, K, h, w, C]).
  """
  enc, kv, dec = caches
  vae = nnx.merge(vae_graphdef, vae_state)
  enc, src_lat = vae_lib.encode_chunk(vae, enc, to_unit(frames_u8))
  src_lat = src_lat.astype(jnp.float32)
  cam = camera_features(config.model, target_poses, intrinsics, src_lat.shape[2:4],
                        vae.spatial_factor)
  # A stream does not know its source camera's motion: a "warped_source" anchor takes the
  # target poses as offsets from the source camera at the same frame.
  anchor = anchor_for(config.model, src_lat, target_poses, intrinsics, vae.spatial_factor)
  kv, x0 = student_inf.generate_chunk(student_graphdef, student_params, kv, src_lat, cam, text,
                                      key, student_inf.student_sigmas(config), anchor)
  dec, frames = vae_lib.decode_chunk(vae, dec, x0)
  return (enc, kv, dec), to_uint8(frames), x0


def _empty_caches(config, vae, height: int, width: int, max_frames: int | None):
  """(vae encode cache, student KV cache, vae decode cache) of an empty batch-1 stream."""
  s = vae.spatial_factor
  return (vae_lib.init_encode_cache(vae, 1, height, width),
          causal.init_student_cache(config, 1, (height // s, width // s), max_frames),
          vae_lib.init_decode_cache(vae, 1, height, width))


class StreamingSession:
  """Streams one source video (batch 1) through the student, chunk by chunk."""

  def __init__(self, config, student_graphdef, student_params, vae, *, height: int, width: int,
               intrinsics, text=None, seed: int = 0, controller: CameraController | None = None,
               max_frames: int | None = None, noise_period: int | None = None):
    self.config = config
    self.k = int(config.student.chunk_pairs)
    self.r = vae.temporal_factor
    s = vae.spatial_factor
    vae_lib.check_video(np.zeros((1, 1, height, width, 3), np.float32), spatial=s,
                        temporal=self.r, channels=3, name="session frames", first_chunk=True)
    self.height, self.width = height, width
    self.intrinsics = jnp.asarray(intrinsics, jnp.float32).reshape(1, 3, 3)
    self.text = text
    self.seed = int(seed)
    if noise_period is not None and int(noise_period) < 1:
      raise ValueError(f"noise_period={noise_period}: expected a positive number of chunks or None")
    self.noise_period = None if noise_period is None else int(noise_period)
    vae_graphdef, self._vae_state = nnx.split(vae)
    self._params = student_params
    self._empty_caches = functools.partial(
        _empty_caches, config, vae, height, width, max_frames)
    self._step = jax.jit(functools.partial(chunk_step, config, student_graphdef, vae_graphdef))
    self.reset(seed, controller)

  def reset(self, seed: int | None = None, controller: CameraController | None = None):
    """Starts a new stream: empty caches, no pending or unpulled frames, counters at 0.

    The compiled chunk step is kept, so a reset session produces its first chunk without
    compiling again (and gives the same frames as a fresh session with the same seed).

    Args:
      seed: noise seed of the new stream (None: keep the current one).
      controller: camera of the new stream (None: a new `CameraController`, i.e. the
        camera back at the source's first pose, holding still).
    """
    if seed is not None:
      self.seed = int(seed)
    self._key = jax.random.key(self.seed)
    self.controller = controller or CameraController()
    self._caches = self._empty_caches()
    self._pending: list[np.ndarray] = []      # source frames not yet consumed
    self._out: list[np.ndarray] = []          # generated frames not yet pulled
    self.chunks_done = 0
    self.frames_done = 0                       # pixel frames generated so far
    self.latencies: list[float] = []           # seconds per chunk (first includes compile)
    self.last_latents = None                   # f32[K, h, w, C] target latents of the last chunk
    self._last_call = None                     # (caches before, step arguments) of that chunk

  def warmup(self) -> list[float]:
    """Compiles both chunk shapes (first, steady) on dummy frames, then resets.

    Only on a fresh stream (nothing pushed yet); keeps the seed and the controller.
    Returns the seconds each dummy chunk took (compile + one run).
    """
    if self.chunks_done or self._pending:
      raise RuntimeError("warmup() needs a fresh stream: call it before push() or after reset()")
    controller = self.controller
    self.reset(controller=CameraController())
    blank = np.zeros((self.chunk_frames(0) + self.chunk_frames(1), self.height, self.width, 3),
                     np.uint8)
    self.push(blank)
    seconds = list(self.latencies)
    self.reset(controller=controller)
    return seconds

  # ------------------------------------------------------------------ frames in / out
  def chunk_frames(self, chunk_index: int | None = None) -> int:
    c = self.chunks_done if chunk_index is None else chunk_index
    return 1 + self.r * (self.k - 1) if c == 0 else self.r * self.k

  def push(self, frames) -> int:
    """Adds source frames uint8[N, H, W, 3] (or one [H, W, 3]); runs every chunk now complete.

    Returns the number of chunks generated.
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
      frames = frames[None]
    if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3) or \
        frames.dtype != np.uint8:
      raise ValueError(f"source frames must be uint8[N, {self.height}, {self.width}, 3], "
                       f"got {frames.dtype}{list(frames.shape)}")
    self._pending.extend(frames)
    n = 0
    while len(self._pending) >= self.chunk_frames():
      self._run_chunk()
      n += 1
    return n

  def pull(self) -> np.ndarray:
    """All generated frames not pulled yet: uint8[N, H, W, 3] (N may be 0)."""
    out = np.stack(self._out) if self._out else np.zeros((0, self.height, self.width, 3), np.uint8)
    self._out = []
    return out

  def command(self, text: str):
    """A live camera command ("pan 5", "dolly 0.2", "preset arc_left", ...).

    Raises `CameraCommandError` for invalid commands; the stream keeps its state.
    """
    return self.controller.apply_command(text)

  def replay_last_chunk(self, kv_transform) -> np.ndarray:
    """The last chunk again, from the caches it started from with the student KV cache
    passed through `kv_transform` (e.g. `kv_cache.advance`): its target latents
    f32[K, h, w, C]. Nothing in the stream changes (a probe for the drift bench)."""
    (enc, kv, dec), args = self._last_call
    _, _, latents = self._step(self._params, self._vae_state, (enc, kv_transform(kv), dec), *args)
    return np.asarray(latents[0])

  # ------------------------------------------------------------------ internals
  def _latent_pixel_frames(self, chunk_index: int) -> np.ndarray:
    first_latent = chunk_index * self.k
    return self.r * np.arange(first_latent, first_latent + self.k)

  def _run_chunk(self):
    t0 = time.perf_counter()
    c = self.chunks_done
    causal.check_stream_length(self._caches[1], c + 1, f"the stream ({self.frames_done} frames)")
    n = self.chunk_frames()
    frames = np.stack(self._pending[:n])[None]
    del self._pending[:n]
    poses = np.stack([self.controller.pose_at(int(f)) for f in self._latent_pixel_frames(c)])
    key = jax.random.fold_in(self._key, c if self.noise_period is None else c % self.noise_period)
    args = (frames, jnp.asarray(poses, jnp.float32)[None], self.intrinsics, self.text, key)
    self._last_call = (self._caches, args)
    self._caches, out, latents = self._step(self._params, self._vae_state, self._caches, *args)
    out = np.asarray(out[0])
    self.last_latents = np.asarray(latents[0])
    self.chunks_done += 1
    self.frames_done += n
    self.controller.advance_to(self.frames_done)
    self._out.extend(out)
    self.latencies.append(time.perf_counter() - t0)


def render_offline(config, student_graphdef, student_params, vae, source_u8, target_poses,
                   intrinsics, text=None, seed: int = 0, max_frames: int | None = None,
                   warp_poses=None):
  """The whole video at once: VAE encode -> one `lax.scan` over chunks -> VAE decode.

  Args:
    source_u8: uint8[B, T, H, W, 3] with T = 1 + 4 (n K - 1) for n chunks.
    target_poses: f32[B, F, 4, 4] per latent frame (F = n K).
    warp_poses: (target f32[B, F, 4, 4], source f32[B, F, 4, 4] or None) relative to the
      source's first frame, for a "warped_source" student's anchor
      (`warp_anchor.warped_source`); None: `target_poses` as offsets from the source
      camera at the same frame, as a stream takes them.
  Returns uint8[B, T, H, W, 3]; equals a `StreamingSession` fed the same frames and poses
  (a `model.warp_space = "pixel"` student renders only here: the stream does not build
  pixel anchors yet).
  """
  s = vae.spatial_factor
  b, _, h, w = source_u8.shape[:4]
  src_lat = vae.encode(to_unit(source_u8)).astype(jnp.float32)
  k = jnp.asarray(intrinsics, jnp.float32)
  cam = camera_features(config.model, jnp.asarray(target_poses, jnp.float32), k,
                        src_lat.shape[2:4], s)
  tgt, src_poses = (target_poses, None) if warp_poses is None else warp_poses
  anchor = anchor_from_video(config.model, vae, source_u8, src_lat, tgt, k, src_poses)
  cache = causal.init_student_cache(config, b, (h // s, w // s), max_frames)
  _, x0 = student_inf.generate_video(student_graphdef, student_params, cache, src_lat, cam, text,
                                     jax.random.key(seed), student_inf.student_sigmas(config),
                                     chunk_pairs=int(config.student.chunk_pairs), anchor=anchor)
  return to_uint8(vae.decode(x0))
