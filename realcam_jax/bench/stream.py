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

Input and drift. Every stream plays one synthetic scene (`data.synthetic.sample_clip`,
source camera only) in a loop of one training length (`chunks_per_length` chunks of
`4 K` frames), with the noise of chunk c reused at c + period (`noise_period`) and the
target camera holding still. A chunk then repeats an earlier one exactly in its inputs
(source frames, camera, noise); its *drift* is the relative L2 difference of its target
latents from those of its first occurrence (`loop_drift`). A stream whose outputs
depend only on the inputs and the visible history (bounded positions, issue 20) has a
drift that settles after the first loop instead of growing with the stream length.
(Chunk 0 has the shorter first-chunk shape, so its first repeat is chunk `period`.)
The generated chunks feed back through the window, so this drift also holds how much the
outputs depend on their (generated) history. *Position drift* isolates the positions:
each chunk of a windowed stream is replayed from exactly its caches with the stream
counter moved back to the first steady-state chunk of the same loop phase
(`kv_cache.advance`): same inputs, same visible history, another stream index.
Speed does not depend on the content or the weights; drift needs weights whose outputs
depend on the history, so random weights are perturbed (`testing.perturb`).
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


def loop_clip(config, vae, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(frames u8[P, H, W, 3], intrinsics f32[3, 3]): one training length of a synthetic scene
  seen by its source camera, P = chunks_per_length * 4 K frames (a whole number of steady
  chunks, so the loop repeats chunk for chunk)."""
  from realcam_jax.data.synthetic import sample_clip
  frames = chunks_per_length(config) * vae.temporal_factor * int(config.student.chunk_pairs)
  clip = sample_clip(seed, frames, height, width, 0)
  return clip["source_rgb"], clip["intrinsics"]


def first_occurrence(chunk: int, period: int) -> int | None:
  """The earlier chunk whose inputs chunk `chunk` repeats on a looping stream of `period`
  chunks (None: it is a first occurrence). Chunk 0 is shorter, so position 0 first occurs
  at chunk `period`."""
  pos = chunk % period
  first = pos if pos else period
  return None if chunk <= first else first


def loop_drift(latents: list[np.ndarray], period: int) -> list[float | None]:
  """Per chunk: ||x_c - x_first|| / ||x_first|| of its target latents vs its first
  occurrence (`first_occurrence`), None for first occurrences."""
  out = []
  for c, x in enumerate(latents):
    f = first_occurrence(c, period)
    if f is None:
      out.append(None)
      continue
    ref = np.asarray(latents[f], np.float64)
    out.append(float(np.linalg.norm(np.asarray(x, np.float64) - ref) /
                     max(np.linalg.norm(ref), 1e-12)))
  return out


def drift_summary(drift: list[float | None], period: int) -> dict:
  """Mean drift per loop of the stream (loops without a repeat: None), its max, its last."""
  loops = []
  for start in range(0, len(drift), period):
    vals = [d for d in drift[start:start + period] if d is not None]
    loops.append(float(np.mean(vals)) if vals else None)
  vals = [d for d in drift if d is not None]
  return {"drift_per_loop": loops, "drift_max": max(vals) if vals else None,
          "drift_last": vals[-1] if vals else None}


def position_probe_index(chunk: int, period: int, sink: int, window: int) -> int | None:
  """The earliest chunk index >= sink + window + 1 (ring wrapped) in the same loop phase as
  `chunk`; None when it is `chunk` itself or earlier."""
  first = sink + window + 1
  c0 = first + (chunk - first) % period
  return None if chunk <= c0 else c0


def _rel(x, ref) -> float:
  ref = np.asarray(ref, np.float64)
  return float(np.linalg.norm(np.asarray(x, np.float64) - ref) / max(np.linalg.norm(ref), 1e-12))


def run_stream(session, num_chunks: int, loop: np.ndarray) -> dict:
  """Streams `num_chunks` chunks of the looping clip `loop` u8[P, H, W, 3] from a fresh
  session state (frame i of the stream is loop[i % P])."""
  from realcam_jax.inference import kv_cache as kvc
  cpu0 = time.process_time()
  latents, pos, pos_drift, probe_cpu = [], 0, [], 0.0
  period = session.noise_period or num_chunks
  s = session.config.student
  ring = int(s.window_chunks) > 0
  for c in range(num_chunks):
    n = session.chunk_frames(c)
    session.push(loop[np.arange(pos, pos + n) % len(loop)])
    pos += n
    session.pull()
    latents.append(session.last_latents)
    c0 = position_probe_index(c, period, int(s.sink_chunks), int(s.window_chunks)) if ring else None
    t0 = time.process_time()            # the probe is not part of the stream's cost
    pos_drift.append(None if c0 is None else _rel(
        session.replay_last_chunk(lambda kv, d=c0 - c: kvc.advance(kv, d)), session.last_latents))
    probe_cpu += time.process_time() - t0
  cpu = time.process_time() - cpu0 - probe_cpu
  lat = list(session.latencies)
  drift = loop_drift(latents, period)
  probed = [d for d in pos_drift if d is not None]
  return {"chunks": num_chunks, "frames": session.frames_done,
          "loop_chunks": period, "chunk_drift": drift, **drift_summary(drift, period),
          "position_drift": pos_drift, "position_drift_max": max(probed) if probed else None,
          "first_chunk_latency_s": lat[0], "chunk_latency_s": lat,
          "median_chunk_latency_s": float(np.median(lat[1:] if len(lat) > 1 else lat)),
          "steady_fps": steady_fps(session),
          "cpu_s_per_frame": cpu / session.frames_done,
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
    lengths: [per length: multiple, chunks, frames, chunk_latency_s [chunks],
    chunk_drift [chunks] (None for first occurrences), drift_per_loop, drift_max,
    drift_last, ..., compile_s]).
  """
  from realcam_jax.inference.session import StreamingSession

  config = with_window(config) if window else without_window(config)
  per = chunks_per_length(config)
  k = int(config.student.chunk_pairs)
  loop, intr = loop_clip(config, vae, height, width, seed)
  latent_hw = (height // vae.spatial_factor, width // vae.spatial_factor)
  results, session, warm = [], None, None
  for m in sorted(multiples):
    if session is None or not window:   # the unlimited cache is sized per length
      session = StreamingSession(config, graphdef, params, vae, height=height, width=width,
                                 intrinsics=intr, seed=seed, max_frames=m * per * k,
                                 noise_period=per)
      warm = session.warmup()
      fresh = True
    else:
      session.reset()
      fresh = False
    row = {"multiple": m, **run_stream(session, m * per, loop),
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
