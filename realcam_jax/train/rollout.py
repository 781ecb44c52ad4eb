"""Self-Forcing rollout: the student generates a clip chunk by chunk on its own outputs.

Every chunk runs the few-step chain of `inference/student.py` (noise -> x0 -> re-noise ...)
attending to the KV of the chunks it generated before (committed at sigma 0). One random
exit level e (shared by all chunks, drawn from the rollout key, so identical on every
device) ends each chunk's chain: the chunk's output is its x0 prediction at level e, and
that prediction is the only computation that carries gradient. The earlier levels and the
cache are constants (`stop_gradient`).

Two equivalent formulations (their gradients are tested equal):
  - `rollout_naive`: one `lax.scan` over chunks; each chunk's exit prediction is taken
    with gradient inside the scan (reverse mode stores every chunk's activations).
  - `rollout` (two phases, the one training uses):
      1. `rollout_no_grad`: a no-grad scan producing each chunk's exit input (the noisy
         chunk at level e), its x0 and the final cache, which holds every chunk;
      2. `exit_predictions`: a `jax.checkpoint`ed scan with gradient recomputing each
         chunk's exit x0 from its exit input, reading the detached final cache as it was
         when that chunk was generated (`KVCache.visible(chunk)`).

`student.source_once` (`RolloutSpec.source_once`) goes into the rollout's cache, so every
chunk runs as a `source_once` stream does (sources once, then the targets alone); the
gradient phase recomputes each chunk's source pass with gradient.

Cache geometry: the same as streaming. The rollout's cache holds every chunk, but each
chunk reads it through the rolling window (`RolloutSpec.window_chunks`, sinks
`sink_chunks`) at the positions a stream uses (`KVCache.visible`, `query_position`,
`position_shift`; `inference/kv_cache.py`), so a rollout of n chunks computes exactly
what a stream computes at chunks 0..n-1, including the gap between the sinks and the
window once it has slid past them (tested against `generate_video` through the ring).
Rollouts shorter than sink + window + 2 chunks never meet that gap (see
`configs/student.py`, ablation `long_rollout`).

Keys: chunk c draws its noise from `chunk_keys(fold_in(noise_key, c), levels)` (see
`inference/student.py`); `split_rollout_key` gives (exit level key, noise key).

Shapes: B batch, F frame pairs, n = F / K chunks, K pairs per chunk, h/w/C latent size.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from realcam_jax.inference import kv_cache as kvc
from realcam_jax.inference import student
from realcam_jax.models import causal
from realcam_jax.models.camera_features import batch_camera_features
from realcam_jax.models.warp_anchor import batch_anchor


@flax.struct.dataclass
class RolloutSpec:
  """Static description of a rollout (from `config.student`)."""
  chunk_pairs: int = flax.struct.field(pytree_node=False)
  sink_chunks: int = flax.struct.field(pytree_node=False, default=0)
  window_chunks: int = flax.struct.field(pytree_node=False, default=0)   # 0 = unlimited
  # student.source_once: chunks run their sources once, then the targets alone (as a stream).
  source_once: bool = flax.struct.field(pytree_node=False, default=False)

  @classmethod
  def from_config(cls, config) -> "RolloutSpec":
    s = config.student
    if int(s.sink_chunks) < 0 or int(s.window_chunks) < 0:
      raise ValueError(f"student.sink_chunks={s.sink_chunks} and student.window_chunks="
                       f"{s.window_chunks} must be >= 0")
    return cls(int(s.chunk_pairs), int(s.sink_chunks), int(s.window_chunks),
               causal.source_once(config))


@flax.struct.dataclass
class PhaseOne:
  """Result of the no-grad pass.

  exit_inputs: [n, B, K, h, w, C] each chunk's noisy latents at the exit level.
  exit_x0: f32[n, B, K, h, w, C] each chunk's output (no gradient).
  cache: KVCache holding all n committed chunks (k, v [L, B, n * T, N, H]).
  exit_level: i32[] the exit level index e.
  """
  exit_inputs: jax.Array
  exit_x0: jax.Array
  cache: kvc.KVCache
  exit_level: jax.Array


def conditions(config, batch: dict):
  """(source [B, F, h, w, C], camera features [B, F, ...] or None, text or None, anchor
  [B, F, h, w, C] of a "warped_source" model (`warp_anchor.batch_warped_source`) or None)."""
  src = batch["source_latents"]
  sf = config.model.get("vae_spatial_factor", 8)
  cam = batch_camera_features(config.model, batch, src.shape[2:4], sf)
  return src, cam, batch.get("text"), batch_anchor(config.model, batch, sf)


def split_rollout_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(exit level key, noise key) of a rollout key."""
  k_exit, k_noise = jax.random.split(key)
  return k_exit, k_noise


def sample_exit_level(key: jax.Array, num_levels: int) -> jax.Array:
  """i32[]: the exit level, uniform over the student's levels."""
  return jax.random.randint(key, (), 0, num_levels)


def _training_cache(model_cfg, spec: RolloutSpec, source) -> kvc.KVCache:
  """A cache large enough for every chunk of the clip (attention window applied by mask and
  positions by `KVCache.position_shift`, exactly as a stream's ring buffer reads it)."""
  b, f, h, w, _ = source.shape
  n = f // spec.chunk_pairs
  sink = min(spec.sink_chunks, n)
  return kvc.init_cache(model_cfg.num_layers, b, model_cfg.num_heads,
                        model_cfg.dim // model_cfg.num_heads,
                        chunk_tokens=2 * spec.chunk_pairs * causal.tokens_per_frame(model_cfg, (h, w)),
                        window_chunks=max(n - sink, 1), sink_chunks=sink,
                        dtype=jnp.dtype(model_cfg.dtype), source_once=spec.source_once)


def _chunked(source, camera, spec, anchor=None):
  src = causal.split_chunks(source, spec.chunk_pairs)
  cam = None if camera is None else causal.split_chunks(camera, spec.chunk_pairs)
  anc = None if anchor is None else causal.split_chunks(anchor, spec.chunk_pairs)
  return src, cam, anc, jnp.arange(src.shape[0], dtype=jnp.int32)


def rollout_no_grad(graphdef, params, source, camera, text, key, sigmas, spec: RolloutSpec,
                    anchor=None) -> PhaseOne:
  """Phase 1: the whole rollout without gradient (params are stop_gradient'ed). `anchor`:
  a "warped_source" student's anchor [B, F, h, w, C] (or None), as in every function here."""
  model = nnx.merge(graphdef, jax.lax.stop_gradient(params))
  k_exit, k_noise = split_rollout_key(key)
  e = sample_exit_level(k_exit, sigmas.shape[0])
  win = spec.window_chunks

  def body(cache, xs):
    src_c, cam_c, anc_c, c = xs
    keys = student.chunk_keys(jax.random.fold_in(k_noise, c), sigmas.shape[0])
    cache, x_e, x0 = student.run_chunk(model, cache, src_c, camera_c=cam_c, text=text, keys=keys,
                                       sigmas=sigmas, exit_level=e, chunk_index=c,
                                       window_chunks=win, anchor_c=anc_c)
    return cache, (x_e, x0)

  cache, (x_e, x0) = jax.lax.scan(body, _training_cache(model.cfg, spec, source),
                                  _chunked(source, camera, spec, anchor))
  return jax.lax.stop_gradient(PhaseOne(x_e, x0, cache, e))


def exit_predictions(graphdef, params, phase_one: PhaseOne, source, camera, text, sigmas,
                     spec: RolloutSpec, anchor=None) -> jax.Array:
  """Phase 2: every chunk's exit x0 with gradient w.r.t. params: f32[B, F, h, w, C].

  A `jax.checkpoint`ed scan over chunks; the cache and exit inputs are constants.
  """
  one = jax.lax.stop_gradient(phase_one)
  sigma_e = sigmas[one.exit_level]
  win = spec.window_chunks

  @jax.checkpoint
  def predict(p, x_e, src_c, cam_c, anc_c, c):
    model = nnx.merge(graphdef, p)
    return student.predict_x0(model, one.cache, src_c, x_e, sigma_e, cam_c, text, c,
                              window_chunks=win, anchor_c=anc_c)

  def body(_, xs):
    x_e, (src_c, cam_c, anc_c, c) = xs
    return None, predict(params, x_e, src_c, cam_c, anc_c, c)

  _, x0 = jax.lax.scan(body, None, (one.exit_inputs, _chunked(source, camera, spec, anchor)))
  return causal.merge_chunks(x0)


def rollout(graphdef, params, source, camera, text, key, sigmas, spec: RolloutSpec,
            anchor=None) -> tuple[jax.Array, PhaseOne]:
  """Two-phase Self-Forcing rollout: (x f32[B, F, h, w, C] with gradient, phase-1 result)."""
  one = rollout_no_grad(graphdef, params, source, camera, text, key, sigmas, spec, anchor)
  return (exit_predictions(graphdef, params, one, source, camera, text, sigmas, spec, anchor),
          one)


def rollout_naive(graphdef, params, source, camera, text, key, sigmas, spec: RolloutSpec,
                  anchor=None) -> jax.Array:
  """Single-scan reference: gradient through each chunk's exit step inside one scan."""
  model_sg = nnx.merge(graphdef, jax.lax.stop_gradient(params))
  k_exit, k_noise = split_rollout_key(key)
  e = sample_exit_level(k_exit, sigmas.shape[0])
  win = spec.window_chunks

  def body(cache, xs):
    src_c, cam_c, anc_c, c = xs
    keys = student.chunk_keys(jax.random.fold_in(k_noise, c), sigmas.shape[0])
    new_cache, x_e, _ = jax.lax.stop_gradient(student.run_chunk(
        model_sg, cache, src_c, cam_c, text, keys, sigmas, e, c, window_chunks=win,
        anchor_c=anc_c))
    x0 = student.predict_x0(nnx.merge(graphdef, params), jax.lax.stop_gradient(cache), src_c,
                            x_e, sigmas[e], cam_c, text, c, window_chunks=win, anchor_c=anc_c)
    return new_cache, x0

  _, x0 = jax.lax.scan(body, _training_cache(model_sg.cfg, spec, source),
                       _chunked(source, camera, spec, anchor))
  return causal.merge_chunks(x0)


def no_grad_samples(phase_one: PhaseOne) -> jax.Array:
  """The rollout's outputs without gradient: f32[B, F, h, w, C]."""
  return causal.merge_chunks(phase_one.exit_x0)
