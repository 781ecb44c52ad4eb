"""Streaming student speed vs video length: one `StreamingSession` stream per length.

Lengths are multiples of the training length (`config.data.latent_frames` latent frames =
`latent_frames / K` chunks). Per length the stream runs from a fresh state after the
chunk step is compiled (`StreamingSession.warmup`), so every latency excludes compile.

Two cache policies (`config.student`):
  unlimited  window_chunks = 0: the KV cache holds every chunk of the stream, so its size
             (and the per-chunk attention cost) grows with the video length; one
             compilation per length.
  window     a rolling window of `window_chunks` chunks plus `sink_chunks` sink chunks:
             constant size, one compilation for all lengths (`reset` between streams).
"""

from __future__ import annotations

import resource
import time

import numpy as np

WINDOW_DEFAULT = dict(window_chunks=2, sink_chunks=1)   # configs/student.py "window"


def with_window(config):
  """`config` with a rolling window (its own settings, else `WINDOW_DEFAULT`)."""
  c = config.copy_and_resolve_references()
  if int(c.student.window_chunks) == 0:
    c.student.window_chunks = WINDOW_DEFAULT["window_chunks"]
    c.student.sink_chunks = WINDOW_DEFAULT["sink_chunks"]
  return c


def without_window(config):
  c = config.copy_and_resolve_references()
  c.student.window_chunks = 0
  c.student.sink_chunks = 0
  return c


def chunks_per_length(config) -> int:
  """Chunks in one training-length video."""
  k, f = int(config.student.chunk_pairs), int(config.data.latent_frames)
  if f % k:
    raise ValueError(f"config.data.latent_frames={f} is not a multiple of chunk_pairs={k}")
  return f // k


def rss_mb() -> float:
  """Resident memory of this process now (MiB)."""
  with open("/proc/self/statm") as f:
    pages = int(f.read().split()[1])
  return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
  """Peak resident memory of this process so far (MiB; Linux ru_maxrss is KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def kv_cache_mb(config, latent_hw: tuple[int, int], num_frames: int) -> float:
  """Size of the student's KV cache (k and v, batch 1) for a stream, MiB."""
  import jax.numpy as jnp
  from realcam_jax.models import causal
  m = config.model
  lay = causal.cache_layout(config, latent_hw, num_frames)
  slots = (lay["sink_chunks"] + lay["window_chunks"]) * lay["chunk_tokens"]
  return 2 * m.num_layers * slots * m.dim * jnp.dtype(m.dtype).itemsize / 2**20


def steady_fps(session) -> float | None:
  """Generated frames/s over chunks 1.. (chunk 0 has the smaller first-chunk shape)."""
  lat = session.latencies
  if len(lat) < 2:
    return None
  return sum(session.chunk_frames(i) for i in range(1, len(lat))) / sum(lat[1:])


def run_stream(session, num_chunks: int, rng) -> dict:
  """Streams `num_chunks` chunks of random frames from a fresh session state."""
  cpu0 = time.process_time()
  for c in range(num_chunks):
    n = session.chunk_frames(c)
    session.push(rng.integers(0, 256, (n, session.height, session.width, 3), dtype=np.uint8))
    session.pull()
  lat = list(session.latencies)
  return {"chunks": num_chunks, "frames": session.frames_done,
          "first_chunk_latency_s": lat[0], "chunk_latency_s": lat,
          "median_chunk_latency_s": float(np.median(lat[1:] if len(lat) > 1 else lat)),
          "steady_fps": steady_fps(session),
          "cpu_s_per_frame": (time.process_time() - cpu0) / session.frames_done,
          "rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}


def compile_seconds(warmup_s: list[float], stream: dict) -> dict:
  """Compile time per chunk shape: the dummy chunk's time minus a measured run."""
  run_first = stream["first_chunk_latency_s"]
  run_steady = stream["median_chunk_latency_s"]
  return {"first_shape_s": max(warmup_s[0] - run_first, 0.0),
          "steady_shape_s": max(warmup_s[1] - run_steady, 0.0),
          "warmup_s": list(warmup_s)}


def bench_student(config, graphdef, params, vae, height: int, width: int,
                  multiples: list[int], *, window: bool, seed: int = 0, progress=None) -> dict:
  """Latency / fps / memory of streams of `multiples` x the training length.

  Returns:
    dict(system, window_chunks, sink_chunks, chunk_pairs, chunk_frames [first, steady],
    lengths: [per length: multiple, chunks, frames, chunk_latency_s [chunks], ...,
    compile_s]).
  """
  from realcam_jax.camera.intrinsics import intrinsics_from_fov
  from realcam_jax.inference.session import StreamingSession

  config = with_window(config) if window else without_window(config)
  per = chunks_per_length(config)
  k = int(config.student.chunk_pairs)
  intr = np.asarray(intrinsics_from_fov(60.0, width, height), np.float32)
  rng = np.random.default_rng(seed)
  latent_hw = (height // vae.spatial_factor, width // vae.spatial_factor)
  results, session, warm = [], None, None
  for m in sorted(multiples):
    if session is None or not window:   # the unlimited cache is sized per length
      session = StreamingSession(config, graphdef, params, vae, height=height, width=width,
                                 intrinsics=intr, seed=seed, max_frames=m * per * k)
      warm = session.warmup()
      fresh = True
    else:
      session.reset()
      fresh = False
    row = {"multiple": m, **run_stream(session, m * per, rng),
           "kv_cache_mb": kv_cache_mb(config, latent_hw, m * per * k)}
    row["compile_s"] = compile_seconds(warm, row) if fresh else None
    results.append(row)
    if progress is not None:
      progress(row)
  s = config.student
  return {"system": "student_window" if window else "student",
          "window_chunks": int(s.window_chunks), "sink_chunks": int(s.sink_chunks),
          "chunk_pairs": k, "chunks_per_training_length": per,
          "chunk_frames": [session.chunk_frames(0), session.chunk_frames(1)],
          "lengths": results}


def abstract_models(config):
  """(student graphdef, abstract student params, abstract random VAE): nothing allocated."""
  from flax import nnx

  from realcam_jax.inference.load import vae_config_for
  from realcam_jax.models import vae as vae_lib
  from realcam_jax.models.realcam import RealCamDiT
  from realcam_jax.train import state as st
  graphdef, params = st.abstract_model(lambda rngs: RealCamDiT(config.model, rngs=rngs))
  vae_model = vae_config_for(config).model
  vae = nnx.eval_shape(lambda: vae_lib.WanVAE.from_config(vae_model, rngs=nnx.Rngs(0)))
  return graphdef, params, vae


def dry_run(config, graphdef, params, vae, height: int, width: int, *, window: bool,
            multiple: int = 1) -> dict:
  """The chunk step's shapes for a stream of `multiple` x the training length, by
  `jax.eval_shape` (no weights allocated, nothing compiled; any size on any machine).

  Returns dict(system, chunk_frames [first, steady], kv_cache_mb, params, and per chunk
  shape the generated frames' and target latents' shapes).
  """
  import functools

  import jax
  import jax.numpy as jnp
  from flax import nnx

  from realcam_jax.inference import session as sess
  config = with_window(config) if window else without_window(config)
  k, r, s = int(config.student.chunk_pairs), vae.temporal_factor, vae.spatial_factor
  frames_total = multiple * chunks_per_length(config) * k
  vae_graphdef, vae_state = nnx.split(vae)
  caches = jax.eval_shape(lambda st: sess._empty_caches(
      config, nnx.merge(vae_graphdef, st), height, width, frames_total), vae_state)
  step = functools.partial(sess.chunk_step, config, graphdef, vae_graphdef)
  key = jax.eval_shape(lambda: jax.random.key(0))
  out = {}
  for name, t in (("first", 1 + r * (k - 1)), ("steady", r * k)):
    frames = jax.ShapeDtypeStruct((1, t, height, width, 3), jnp.uint8)
    poses = jax.ShapeDtypeStruct((1, k, 4, 4), jnp.float32)
    intr = jax.ShapeDtypeStruct((1, 3, 3), jnp.float32)
    caches, gen, lat = jax.eval_shape(step, params, vae_state, caches, frames, poses, intr,
                                      None, key)
    out[name] = {"frames_in": list(frames.shape), "generated": list(gen.shape),
                 "latents": list(lat.shape)}
  return {"system": "student_window" if window else "student", "size": [height, width],
          "chunk_frames": [1 + r * (k - 1), r * k],
          "params": int(sum(x.size for x in jax.tree.leaves(params))),
          "kv_cache_mb": kv_cache_mb(config, (height // s, width // s), frames_total),
          "shapes": out}
