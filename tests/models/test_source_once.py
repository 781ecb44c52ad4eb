"""`student.source_once`: a chunk's sources attend to sources and the cache only, so a stream
runs them once per chunk and every step on the targets alone; == one full forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realcam_jax.config import get_config
from realcam_jax.inference import student
from realcam_jax.models import causal, layout
from realcam_jax.models.blocks import kv_segments
from realcam_jax.models.dit import WanDiT
from realcam_jax.testing import key_with_exit, random_dit
from realcam_jax.train import ode_init, rollout
from realcam_jax.train import state as st

# Every layout / pair-RoPE combination the student allows (prefix + sequential is refused).
MODES = [("interleaved", "shared"), ("interleaved", "sequential"), ("prefix", "shared")]
HW = (4, 4)                                   # latent size: P = 4 tokens per frame (patch 2x2)
_MODELS = {}


def _setup(mode=MODES[0], chunk_pairs=1, sink=0, window=0, **model):
  """(config with source_once, graphdef, params) of the tiny student in layout/pair_rope mode."""
  config = get_config("student:tiny")
  config.model.layout, config.model.pair_rope = mode
  config.model.update(model)
  s = config.student
  s.chunk_pairs, s.sink_chunks, s.window_chunks, s.source_once = chunk_pairs, sink, window, True
  key = (mode, tuple(sorted(model.items())))
  if key not in _MODELS:
    _MODELS[key] = random_dit(config.model)
  return (config,) + _MODELS[key]


def _latents(config, pairs, seed, batch=1):
  r = np.random.default_rng(seed)
  return r.standard_normal((batch, pairs) + HW + (config.model.in_channels,)).astype(np.float32)


def _conditions(config, pairs, seed=0):
  r = np.random.default_rng(seed + 100)
  cam = r.standard_normal((1, pairs, 12)).astype(np.float32)
  text = r.standard_normal((1, config.model.text_len, config.model.text_dim)).astype(np.float32)
  return _latents(config, pairs, seed), cam, text


# ----------------------------------------------------------------------------- (a) the mask

def _frame(f, num_pairs, layout_name):
  """(pair, is_target) of frame f of the combined sequence, written out."""
  if layout_name == "interleaved":
    return f // 2, f % 2 == 1
  return f % num_pairs, f >= num_pairs


def _reference_mask(num_pairs, chunk_pairs, tokens, layout_name, sink, window, source_once):
  """bool[T, T], token by token: may query token i see key token j."""
  t = 2 * num_pairs * tokens
  want = np.zeros((t, t), bool)
  for i in range(t):
    q_pair, q_tgt = _frame(i // tokens, num_pairs, layout_name)
    qc = q_pair // chunk_pairs
    for j in range(t):
      k_pair, k_tgt = _frame(j // tokens, num_pairs, layout_name)
      kc = k_pair // chunk_pairs
      if kc > qc:                                           # a later chunk
        continue
      if kc < qc and window and not (kc < sink or kc >= qc - window):
        continue                                            # evicted from the window
      if source_once and kc == qc and not q_tgt and k_tgt:
        continue                                            # own chunk's targets
      want[i, j] = True
  return want


@pytest.mark.parametrize("layout_name", ["interleaved", "prefix"])
@pytest.mark.parametrize("num_pairs,chunk_pairs,sink,window", [
    (6, 2, 0, 0),          # unlimited: block-causal ids
    (5, 1, 1, 2),          # sink + window over 5 chunks: dense
    (4, 1, 0, 1),
])
def test_chunk_mask_equals_dense_reference(layout_name, num_pairs, chunk_pairs, sink, window):
  config = get_config("student:tiny")
  config.model.layout = layout_name
  tokens = 2
  t = 2 * num_pairs * tokens
  for once in (True, False):
    m = causal.chunk_mask(num_pairs, tokens, chunk_pairs, config.model, sink_chunks=sink,
                          window_chunks=window, source_once=once)
    want = _reference_mask(num_pairs, chunk_pairs, tokens, layout_name, sink, window, once)
    np.testing.assert_array_equal(np.asarray(m.dense(t, t))[0], want)
    if not window:
      assert m.kind == "block_causal"          # still ids (fused kernels, no dense mask)


class _Recorder:
  """Wraps a model and keeps the keyword arguments of every call (the mask)."""

  def __init__(self, model):
    self.model, self.cfg, self.calls = model, model.cfg, []

  def __call__(self, *args, **kw):
    self.calls.append(kw)
    return self.model(*args, **kw)


@pytest.mark.parametrize("layout_name", ["interleaved", "prefix"])
def test_full_block_causal_mask_with_sink_copies_equals_dense_reference(layout_name):
  """5 chunks of 1 pair, 1 sink, window 2: chunk 4 reads a copy of the sink (sequence
  chunk 5) at position 1. Inside every sequence chunk, copy included, sources do not see
  targets."""
  config, graphdef, params = _setup((layout_name, "shared"), 1, 1, 2)
  src, cam, text = _conditions(config, 5)
  tgt, sigma = _latents(config, 5, 1), np.full((1, 5), 0.5, np.float32)
  rec = _Recorder(st.merge(graphdef, params))
  causal.full_block_causal(rec, src, tgt, sigma, cam, text, chunk_pairs=1, sink_chunks=1,
                           window_chunks=2, source_once=True)
  (kw,) = rec.calls
  np.testing.assert_array_equal(kw["pair_pos"], [0, 1, 2, 3, 4, 1])
  # Which sequence chunk sees which (written out; see test_causal's sequence plan).
  vis = np.zeros((6, 6), bool)
  for q, seen in {0: [0], 1: [0, 1], 2: [0, 1, 2], 3: [0, 1, 2, 3], 4: [5, 2, 3, 4],
                  5: [5]}.items():
    vis[q, seen] = True
  p, frames = 4, 12
  want = np.zeros((frames * p, frames * p), bool)
  for i in range(frames * p):
    qn, q_tgt = _frame(i // p, 6, layout_name)
    for j in range(frames * p):
      kn, k_tgt = _frame(j // p, 6, layout_name)
      want[i, j] = vis[qn, kn] and not (qn == kn and not q_tgt and k_tgt)
  np.testing.assert_array_equal(np.asarray(kw["mask"].dense(frames * p, frames * p))[0], want)


def test_sources_do_not_depend_on_their_targets():
  """The option's meaning, on the model's output: with source_once the sources' velocity
  ignores every target of the clip's own chunks; without it, it does not."""
  config, graphdef, params = _setup(MODES[0], 3)
  model = st.merge(graphdef, params)
  src, cam, text = _conditions(config, 6)
  sigma = np.full((1, 6), 0.7, np.float32)

  def sources(tgt, once):
    v = causal.full_block_causal(model, src, tgt, sigma, cam, text, chunk_pairs=3,
                                 source_once=once)
    return np.asarray(layout.split(v, config.model.layout)[0][:, :3])   # chunk 0's sources

  a, b = _latents(config, 6, 1), _latents(config, 6, 2)
  np.testing.assert_array_equal(sources(a, True), sources(b, True))
  assert np.abs(sources(a, False) - sources(b, False)).max() > 1e-3


# ------------------------------------------------------- (b) stream == one full forward

def _stream(config, graphdef, params, n, src, cam, text, steps, history, explicit_index):
  """Chunk by chunk: one source pass, then every (target, sigma) of `steps` on the targets
  only, then the commit (from `history` at sigma 0, or from steps[0]). Returns the target
  velocities [len(steps)] x [B, F, h, w, C]."""
  k = int(config.student.chunk_pairs)
  cache = causal.init_student_cache(config, 1, HW, num_frames=k * n)
  assert cache.source_once

  @jax.jit
  def chunk(params, cache, src_c, cam_c, queries, commit_x, commit_sigma):
    model = st.merge(graphdef, params)
    kw = dict(chunk_index=cache.num_chunks, window_chunks=cache.window_chunks) if (
        explicit_index) else {}
    src_kv = causal.source_pass(model, cache, src_c, text, **kw)
    vs = [causal.target_step(model, cache, src_kv, src_c, x, s, cam_c, text, **kw)
          for x, s in queries]
    return vs, causal.commit(model, cache, src_c, commit_x, commit_sigma, cam_c, text,
                             source_kv=src_kv)

  out = [[] for _ in steps]
  for c in range(n):
    sl = slice(c * k, (c + 1) * k)
    queries = [(x[:, sl], s[:, sl]) for x, s in steps]
    commit = queries[0] if history is None else (history[:, sl], np.zeros((1, k), np.float32))
    vs, cache = chunk(params, cache, src[:, sl], cam[:, sl], queries, *commit)
    for o, v in zip(out, vs):
      o.append(np.asarray(v))
  assert int(cache.num_chunks) == n
  return [np.concatenate(o, axis=1) for o in out]


GEOMETRIES = [   # chunk_pairs, chunks, sink, window, clean history (3 steps), explicit index
    (3, 3, 0, 0, False, False),   # unlimited: block-causal ids 2c + target
    (1, 4, 0, 1, False, True),    # window 1, no sink: dense chunk mask, no copies
    (3, 3, 0, 0, True, False),    # clean copies of every chunk
    (1, 6, 1, 2, True, False),    # 6 chunks through a 3-block ring (wraps twice): sink copies
    (1, 6, 1, 2, True, True),     # the same read through the per-slot mask
]


@pytest.mark.parametrize("mode", MODES, ids="-".join)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "k{}n{}s{}w{}{}{}".format(
    *g[:4], "-clean" if g[4] else "", "-index" if g[5] else ""))
def test_stream_equals_full_forward(mode, geometry):
  k, n, sink, window, clean, explicit = geometry
  config, graphdef, params = _setup(mode, k, sink, window)
  _check_stream(config, graphdef, params, k, n, sink, window, clean, explicit,
                seed=k + n + window)


def test_stream_equals_full_forward_source_skip_and_residual_head():
  """The target-only pass embeds the sources for the source skip and anchors the
  source-residual head on them."""
  config, graphdef, params = _setup(MODES[0], 1, 1, 2, source_skip=True,
                                    prediction="source_residual")
  _check_stream(config, graphdef, params, 1, 6, 1, 2, True, False, seed=5)


def _check_stream(config, graphdef, params, k, n, sink, window, clean, explicit, seed):
  src, cam, text = _conditions(config, k * n, seed)
  r = np.random.default_rng(seed + 1)
  steps = [(_latents(config, k * n, seed + 2 + i), r.uniform(0.1, 1, (1, k * n)).astype(np.float32))
           for i in range(3 if clean else 1)]
  history = _latents(config, k * n, seed + 9) if clean else None
  got = _stream(config, graphdef, params, n, src, cam, text, steps, history, explicit)
  model = st.merge(graphdef, params)
  full = jax.jit(lambda x, s: causal.full_block_causal(
      model, src, x, s, cam, text, chunk_pairs=k, sink_chunks=sink, window_chunks=window,
      history_target=history, source_once=True))
  for (x, s), g in zip(steps, got):
    ref = np.asarray(layout.split(full(x, s), config.model.layout)[1])
    scale = np.abs(ref).max()
    np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-5 * scale)
  # Not trivially equal: without the option the same stream inputs give other outputs.
  x, s = steps[0]
  other = causal.full_block_causal(model, src, x, s, cam, text, chunk_pairs=k, sink_chunks=sink,
                                   window_chunks=window, history_target=history)
  assert np.abs(np.asarray(layout.split(other, config.model.layout)[1]) - got[0]).max() > 1e-3


# --------------------------------------------- tokens per step; the student's loops

def test_a_step_runs_the_dit_on_target_tokens_only(monkeypatch):
  """`generate_chunk` (4 levels + the commit pass): the DiT runs the chunk's K P source
  tokens once, then K P target tokens per network call (with the sources' KV as an extra
  key segment), instead of 2 K P tokens per call."""
  config, graphdef, params = _setup(MODES[0], 3)
  k, p = 3, 4
  runs, real = [], WanDiT.run_blocks

  def spy(self, tokens, inputs, extra_kv=None, return_kv=False):
    record = (tokens.shape[1] * tokens.shape[2], len(kv_segments(extra_kv)))
    jax.debug.callback(lambda: runs.append(record), ordered=True)
    return real(self, tokens, inputs, extra_kv, return_kv)

  monkeypatch.setattr(WanDiT, "run_blocks", spy)
  sigmas = student.student_sigmas(config)
  src, cam, text = _conditions(config, k)
  for once in (True, False):
    config.student.source_once = once
    runs.clear()
    cache = causal.init_student_cache(config, 1, HW)
    cache, _ = jax.jit(student.generate_chunk, static_argnums=0)(
        graphdef, params, cache, src, cam, text, jax.random.key(0), sigmas)
    jax.effects_barrier()
    assert int(cache.num_chunks) == 1
    if once:   # source pass, then 4 levels + commit on the targets (+ the sources' KV)
      assert runs == [(k * p, 1)] + [(k * p, 2)] * (len(sigmas) + 1)
    else:
      assert runs == [(2 * k * p, 1)] * (len(sigmas) + 1)
    queries = sum(r[0] for r in runs)
    assert queries == (6 if once else 10) * k * p           # 1.67x fewer query tokens


def test_generate_video_equals_full_forward_at_the_first_level():
  """The streaming loop (`run_chunk`, exit at level 0) predicts each chunk's x0 from its
  noise as one full source_once forward does with the earlier outputs as clean history."""
  config, graphdef, params = _setup(MODES[1], 1, 1, 2)
  n = 6
  src, cam, text = _conditions(config, n, seed=3)
  sigmas = jnp.asarray([float(student.student_sigmas(config)[0])])       # one level
  cache = causal.init_student_cache(config, 1, HW)
  key = jax.random.key(2)
  _, x0 = jax.jit(lambda p, c: student.generate_video(
      graphdef, p, c, src, cam, text, key, sigmas, chunk_pairs=1))(params, cache)
  noise = np.concatenate([np.asarray(jax.random.normal(
      student.chunk_keys(jax.random.fold_in(key, c), 1)[0], (1, 1) + HW + (4,)))
      for c in range(n)], axis=1)
  model = st.merge(graphdef, params)
  sig = jnp.full((1, n), sigmas[0])
  v = causal.full_block_causal(model, src, noise, sig, cam, text, chunk_pairs=1, sink_chunks=1,
                               window_chunks=2, history_target=np.asarray(x0), source_once=True)
  ref = causal.target_x0(v, noise, sig, config.model)
  np.testing.assert_allclose(x0, ref, rtol=1e-5, atol=1e-5 * float(jnp.abs(ref).max()))


def test_rollout_is_a_source_once_stream():
  """Self-Forcing / DMD: `RolloutSpec.from_config` takes the option, and a rollout past
  the sink/window gap equals `generate_video` through the streaming ring."""
  config, graphdef, params = _setup(MODES[0], 1, 1, 2)
  spec = rollout.RolloutSpec.from_config(config)
  assert spec.source_once
  src, cam, text = _conditions(config, 6, seed=4)
  sigmas = student.student_sigmas(config)
  key = key_with_exit(3)
  one = jax.jit(lambda p: rollout.rollout_no_grad(graphdef, p, src, cam, text, key, sigmas,
                                                   spec))(params)
  assert one.cache.source_once
  cache = causal.init_student_cache(config, 1, HW)
  _, x0 = jax.jit(lambda p, c: student.generate_video(
      graphdef, p, c, src, cam, text, rollout.split_rollout_key(key)[1], sigmas,
      chunk_pairs=1))(params, cache)
  np.testing.assert_allclose(rollout.no_grad_samples(one), x0, rtol=1e-5, atol=1e-5)
  other = jax.jit(lambda p: rollout.rollout_no_grad(
      graphdef, p, src, cam, text, key, sigmas, rollout.RolloutSpec(1, 1, 2)))(params)
  assert np.abs(np.asarray(rollout.no_grad_samples(other)) - np.asarray(x0)).max() > 1e-4


def test_two_phase_gradient_equals_naive():
  """The gradient phase recomputes each chunk's source pass with gradient, as the naive
  single-scan rollout does."""
  config, graphdef, params = _setup(MODES[0], 3, 1, 1)
  spec = rollout.RolloutSpec.from_config(config)
  src, cam, text = _conditions(config, 12, seed=6)
  sigmas = student.student_sigmas(config)
  w = jnp.asarray(np.random.default_rng(1).standard_normal(src.shape), jnp.float32)
  key = key_with_exit(2)
  l2, g2 = jax.jit(jax.value_and_grad(lambda p: jnp.sum(rollout.rollout(
      graphdef, p, src, cam, text, key, sigmas, spec)[0] * w)))(params)
  l1, g1 = jax.jit(jax.value_and_grad(lambda p: jnp.sum(rollout.rollout_naive(
      graphdef, p, src, cam, text, key, sigmas, spec) * w)))(params)
  np.testing.assert_allclose(l2, l1, rtol=1e-5)
  flat1, flat2 = jax.tree.leaves(g1), jax.tree.leaves(g2)
  scale = max(float(jnp.abs(g).max()) for g in flat1)
  assert scale > 0
  for a, b in zip(flat1, flat2):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * scale)


def test_ode_init_forward_takes_the_option(monkeypatch):
  config, graphdef, params = _setup(MODES[0], 3)
  captured, real = [], causal.full_block_causal

  def spy(*a, **kw):
    captured.append(kw.get("source_once"))
    return real(*a, **kw)

  monkeypatch.setattr(causal, "full_block_causal", spy)
  src, cam, text = _conditions(config, 6)
  n = len(ode_init.trajectory_levels(config)[1])
  latents = jnp.stack([_latents(config, 6, 10 + i) for i in range(n)])
  level_sigmas = jnp.asarray(ode_init.trajectory_levels(config)[1])
  x0 = _latents(config, 6, 20)
  losses = []
  for once in (True, False):
    config.student.source_once = once
    losses.append(float(ode_init.regression_loss(params, graphdef, config, (src, cam, text, None),
                                                 latents, level_sigmas, x0,
                                                 jax.random.key(0))[0]))
  assert captured == [True, False]
  assert np.isfinite(losses).all() and losses[0] != losses[1]


def test_errors_and_config():
  config, graphdef, params = _setup(MODES[0], 3)
  assert get_config("student:tiny").student.source_once is False
  assert get_config("student:tiny,source_once").student.source_once is True
  model = st.merge(graphdef, params)
  src, cam, text = _conditions(config, 3)
  tgt, sigma = _latents(config, 3, 1), np.full((1, 3), 0.5, np.float32)
  once = causal.init_student_cache(config, 1, HW)
  with pytest.raises(ValueError, match="built with student.source_once=True"):
    causal.chunk_step(model, once, src, tgt, sigma, cam, text)
  config.student.source_once = False
  plain = causal.init_student_cache(config, 1, HW)
  with pytest.raises(ValueError, match="need a cache built with student.source_once=True"):
    causal.source_pass(model, plain, src, text)
  src_kv = causal.source_pass(model, once, src, text)
  assert src_kv.k.shape == (2, 1, 12, 2, 16)                  # [L, B, K P, N, H]
  bad = jax.tree.map(lambda a: a[:, :, :6], src_kv)
  with pytest.raises(ValueError, match="expected .L=2, B=1, K P=12"):
    causal.target_step(model, once, bad, src, tgt, sigma, cam, text)
