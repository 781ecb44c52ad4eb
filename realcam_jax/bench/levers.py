"""Speed levers of the streaming student, each timed in one run beside the cost model.

Levers (`LEVERS`), variants of the student's steady chunk (`session.chunk_step`: VAE
encode -> denoising steps + commit -> VAE decode), all against the same random weights
at the same size:
  base          the config (demo: 4 steps, window 2 + sink 1, f32 KV cache, no donation)
  steps3        3 denoising steps instead of 4 (timesteps 1000, 667, 333)
  window_1_1    window 1 + sink 1: fewer cached keys per query
  window_4_1    window 4 + sink 1: more cached keys per query
  kv_bf16       the KV cache stored in bf16 (the model still computes in f32 on a CPU)
  donate        the caches donated across chunks (`jax.jit(donate_argnums)`): updated in
                place instead of copied
  combined      steps3 + kv_bf16 + donate
How each is timed: the chunk's three parts are jitted apart (`vae_encode`, the DiT's
steps + commit `dit:<lever>`, `vae_decode`): that gives the VAE's share of a chunk, and
the levers that only change the DiT (steps, window, KV dtype) are timed as their DiT
part, their chunk = VAE encode + their DiT + VAE decode (the VAE does not depend on
them; each XLA:CPU compile of the VAE costs about a minute on the shared CPU, so only
whole chunks that need it are compiled whole). base, donate and combined (donation
spans the VAE caches too) run as whole jitted chunks; base also as its parts, whose sum
shows what jitting the parts apart costs.

Protocol: every variant is compiled and warmed up (sink + window + 1 chunks, so the ring
is full) first; then `rounds` rounds each run `chunks` steady chunks of every variant in
turn (round robin, so a load change on a shared CPU hits all variants alike); a
variant's time is the median of its chunks. Steady chunks only: the caches start in the
"started" state (zeros), the first-chunk shape is never compiled. Speed does not depend
on the weights' values.

The prediction beside each lever comes from `bench/cost.py` at the run's dtypes: the
predicted time of a variant is the measured base time x (its FLOPs / the base FLOPs),
i.e. this CPU's achieved FLOP rate applied to the variant (a CPU is compute bound here;
levers that move bytes only, the KV dtype and donation, are predicted unchanged).
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

STEPS3 = "--config.student.timesteps=(1000.0, 666.667, 333.333)"


@dataclasses.dataclass(frozen=True)
class Lever:
  name: str
  label: str
  overrides: tuple[str, ...] = ()
  cache_dtype: str | None = None
  donate: bool = False
  whole: bool = False        # timed as a whole jitted chunk (else: VAE parts + its DiT)


LEVERS = (
    Lever("base", "as configured", whole=True),
    Lever("steps3", "3 steps", (STEPS3,)),
    Lever("window_1_1", "window 1 + sink 1", ("--config.student.window_chunks=1",
                                              "--config.student.sink_chunks=1")),
    Lever("window_4_1", "window 4 + sink 1", ("--config.student.window_chunks=4",
                                              "--config.student.sink_chunks=1")),
    Lever("kv_bf16", "KV cache bf16", cache_dtype="bfloat16"),
    Lever("donate", "caches donated across chunks", donate=True, whole=True),
    Lever("combined", "3 steps + KV bf16 + donated", (STEPS3,), "bfloat16", True, True),
)
PARTS = ("vae_encode", "dit:base", "vae_decode")


def _inputs(config, vae, height, width, seed=0):
  from realcam_jax.camera.intrinsics import intrinsics_from_fov
  k, r = int(config.student.chunk_pairs), vae.temporal_factor
  rng = np.random.default_rng(seed)
  frames = rng.integers(0, 256, (1, r * k, height, width, 3), dtype=np.uint8)
  poses = np.broadcast_to(np.eye(4, dtype=np.float32), (1, k, 4, 4)).copy()
  intr = np.asarray(intrinsics_from_fov(60.0, width, height), np.float32)[None]
  return frames, poses, intr


def _caches(config, vae, height, width, cache_dtype):
  """Steady-state caches (the VAE's marked started, zeros), batch 1."""
  import jax.numpy as jnp

  from realcam_jax.models import causal
  from realcam_jax.models import vae as vae_lib
  s = vae.spatial_factor
  dtype = None if cache_dtype is None else jnp.dtype(cache_dtype)
  return (vae_lib.init_encode_cache(vae, 1, height, width).replace(started=True),
          causal.init_student_cache(config, 1, (height // s, width // s), dtype=dtype),
          vae_lib.init_decode_cache(vae, 1, height, width).replace(started=True))


class Variant:
  """One jitted chunk function with its own caches; `run()` times one steady chunk."""

  def __init__(self, fn, state, args, warmup: int):
    self.fn, self.state, self.args = fn, state, args
    self.times: list[float] = []
    t0 = time.perf_counter()
    for _ in range(warmup):
      self.run(record=False)
    self.warmup_s = time.perf_counter() - t0

  def run(self, record: bool = True) -> float:
    import jax
    t0 = time.perf_counter()
    self.state, out = self.fn(self.state, *self.args)
    jax.block_until_ready((self.state, out))
    dt = time.perf_counter() - t0
    if record:
      self.times.append(dt)
    return dt


def chunk_variant(config, graphdef, params, vae, height, width, lever: Lever) -> Variant:
  import jax

  from realcam_jax.config import apply_overrides
  from realcam_jax.inference import session as sess
  from flax import nnx
  c = apply_overrides(config.copy_and_resolve_references(), lever.overrides)
  vae_graphdef, vae_state = nnx.split(vae)
  step = functools.partial(sess.chunk_step, c, graphdef, vae_graphdef)
  key = jax.random.key(0)
  frames, poses, intr = _inputs(c, vae, height, width)

  @functools.partial(jax.jit, donate_argnums=(0,) if lever.donate else ())
  def fn(caches, params, vae_state):
    caches, gen, _ = step(params, vae_state, caches, frames, poses, intr, None, key)
    return caches, gen

  return Variant(fn, _caches(c, vae, height, width, lever.cache_dtype), (params, vae_state),
                 _warm(c))


def _warm(config) -> int:
  s = config.student
  return int(s.sink_chunks) + max(int(s.window_chunks), 1) + 1


def _latent(config, vae, height, width):
  import jax.numpy as jnp
  s, k = vae.spatial_factor, int(config.student.chunk_pairs)
  return jnp.zeros((1, k, height // s, width // s, vae.z_dim), jnp.float32)


def vae_variants(config, vae, height, width) -> dict[str, Variant]:
  """The chunk's VAE encode and VAE decode, jitted apart."""
  import jax
  from flax import nnx

  from realcam_jax.inference.session import to_uint8, to_unit
  from realcam_jax.models import vae as vae_lib
  vae_graphdef, vae_state = nnx.split(vae)
  enc, _, dec = _caches(config, vae, height, width, None)
  frames, _, _ = _inputs(config, vae, height, width)
  latent = _latent(config, vae, height, width)

  @jax.jit
  def encode(cache, vs):
    return vae_lib.encode_chunk(nnx.merge(vae_graphdef, vs), cache, to_unit(frames))

  @jax.jit
  def decode(cache, vs):
    cache, out = vae_lib.decode_chunk(nnx.merge(vae_graphdef, vs), cache, latent)
    return cache, to_uint8(out)

  return {"vae_encode": Variant(encode, enc, (vae_state,), 2),
          "vae_decode": Variant(decode, dec, (vae_state,), 2)}


def dit_variant(config, graphdef, params, vae, height, width, lever: Lever) -> Variant:
  """The chunk's DiT part (steps + commit, `student.generate_chunk`) under `lever`."""
  import jax
  import jax.numpy as jnp

  from realcam_jax.config import apply_overrides
  from realcam_jax.inference import student as student_inf
  from realcam_jax.models.camera_features import camera_features
  c = apply_overrides(config.copy_and_resolve_references(), lever.overrides)
  _, kv, _ = _caches(c, vae, height, width, lever.cache_dtype)
  _, poses, intr = _inputs(c, vae, height, width)
  latent = _latent(c, vae, height, width)
  cam = camera_features(c.model, jnp.asarray(poses), jnp.asarray(intr), latent.shape[2:4],
                        vae.spatial_factor)
  sigmas = student_inf.student_sigmas(c)
  key = jax.random.key(0)

  @functools.partial(jax.jit, donate_argnums=(0,) if lever.donate else ())
  def dit(cache, p):
    return student_inf.generate_chunk(graphdef, p, cache, latent, cam, None, key, sigmas)

  return Variant(dit, kv, (params,), _warm(c))


def predicted(config, vae_cfg, height, width, dtypes) -> dict:
  """Cost-model FLOPs / bytes per frame of every lever and of the base chunk's parts."""
  from realcam_jax.bench import cost
  from realcam_jax.config import apply_overrides
  out = {}
  for lever in LEVERS:
    c = apply_overrides(config.copy_and_resolve_references(), lever.overrides)
    opt = cost.option(c, cache_dtype=lever.cache_dtype)
    out[lever.name] = cost.per_frame(c, vae_cfg, height, width, opt, dtypes=dtypes)
  base = out["base"]
  out["parts"] = {"vae_encode": base["vae_encode"], "dit:base": base["dit"],
                  "vae_decode": base["vae_decode"]}
  return out


def run(config, height: int, width: int, *, rounds: int = 5, chunks: int = 3, seed: int = 0,
        say=print) -> dict:
  """Times every lever and the parts (module docstring). Returns the JSON-able numbers."""
  from realcam_jax.bench import cost
  from realcam_jax.inference.load import vae_config_for
  from realcam_jax.models import vae as vae_lib
  from realcam_jax.testing import random_dit
  vae_cfg = vae_config_for(config).model
  vae = vae_lib.create_vae(vae_cfg, seed=seed)
  graphdef, params = random_dit(config.model, seed=seed)
  variants = {}

  def add(name, make):
    t0 = time.perf_counter()
    got = make()
    variants.update(got if isinstance(got, dict) else {name: got})
    say(f"{name}: compiled and warmed up in {time.perf_counter() - t0:.1f} s")
  add("vae parts", lambda: vae_variants(config, vae, height, width))
  for lever in LEVERS:
    if lever.whole:
      add(lever.name, lambda lv=lever: chunk_variant(config, graphdef, params, vae, height,
                                                     width, lv))
    if not lever.donate:
      add(f"dit:{lever.name}", lambda lv=lever: dit_variant(config, graphdef, params, vae,
                                                             height, width, lv))
  for r in range(rounds):
    for v in variants.values():
      for _ in range(chunks):
        v.run()
    say(f"round {r + 1}/{rounds}: " + ", ".join(
        f"{n} {np.median(v.times) * 1e3:.0f} ms" for n, v in variants.items()))
  k, r_ = int(config.student.chunk_pairs), vae.temporal_factor
  frames = r_ * k
  measured = {n: {"median_s": float(np.median(v.times)), "min_s": float(np.min(v.times)),
                  "chunk_s": [float(x) for x in v.times], "fps": frames / float(np.median(v.times))}
              for n, v in variants.items()}
  dtypes = cost.config_dtypes(config)
  return {"size": [height, width], "frames_per_chunk": frames, "rounds": rounds,
          "chunks_per_round": chunks, "dtypes": dataclasses.asdict(dtypes),
          "levers": [dataclasses.asdict(lv) for lv in LEVERS], "measured": measured,
          "predicted": predicted(config, vae_cfg, height, width, dtypes)}


def chunk_seconds(numbers: dict, lever: dict) -> tuple[float, str]:
  """(a lever's chunk seconds, how: 'whole' or 'parts' = encode + its DiT + decode)."""
  m = numbers["measured"]
  if lever["whole"]:
    return m[lever["name"]]["median_s"], "whole"
  return (m["vae_encode"]["median_s"] + m[f"dit:{lever['name']}"]["median_s"]
          + m["vae_decode"]["median_s"]), "parts"


def table(numbers: dict) -> str:
  """Measured vs predicted, one row per lever, then the parts."""
  from realcam_jax.bench import record
  m, p = numbers["measured"], numbers["predicted"]
  frames = numbers["frames_per_chunk"]
  base_s, base_f = m["base"]["median_s"], p["base"]["flops"]
  base_parts = chunk_seconds(numbers, {"name": "base", "whole": False})[0]
  rows = []
  for lv in numbers["levers"]:
    name = lv["name"]
    want = p[name]
    got, how = chunk_seconds(numbers, lv)
    ref = base_s if how == "whole" else base_parts      # compare like with like
    dit = m.get(f"dit:{name}")
    rows.append([lv["label"], f"{want['keys_per_query']:,}", f"{want['kv_cache_mb']:.2f}",
                 f"{want['flops'] / 1e9:.3f}", f"{want['bytes'] / 1e6:.1f}",
                 "—" if dit is None else f"{dit['median_s']:.3f}",
                 f"{got:.3f} ({how})", f"{frames / got:.1f}", f"{ref / got:.2f}x",
                 f"{base_f / want['flops']:.2f}x"])
  lines = [record.markdown_table(
      ["lever", "keys per query", "KV cache MiB", "GFLOP/frame (model)",
       "MB/frame (model)", "DiT s (median)", "chunk s (median)", "frames/s",
       "speed vs base (measured)", "speed vs base (predicted by FLOPs)"], rows), ""]
  total = sum(m[n]["median_s"] for n in PARTS)
  flops = {n: p["parts"][n]["flops"] for n in PARTS}
  rows = [[n, f"{m[n]['median_s']:.3f}", f"{m[n]['median_s'] / total:.0%}",
           f"{flops[n] / 1e9:.3f}", f"{flops[n] / sum(flops.values()):.0%}"] for n in PARTS]
  rows.append(["sum of the parts", f"{total:.3f}", "100%",
               f"{sum(flops.values()) / 1e9:.3f}", "100%"])
  rows.append(["the whole chunk, one jit (base)", f"{base_s:.3f}",
               f"{base_s / total:.0%}", "", ""])
  lines += ["Where a base chunk's time goes (its parts jitted apart):", "",
            record.markdown_table(["part", "chunk s median", "share of time",
                                   "GFLOP/frame (model)", "share of FLOPs"], rows), "",
            f"Steady chunks of {frames} frames at {numbers['size'][1]}x{numbers['size'][0]}, "
            f"{numbers['dtypes']['act']} activations; {numbers['rounds']} rounds x "
            f"{numbers['chunks_per_round']} chunks per variant, round robin; median over its "
            "chunks. chunk s: 'whole' = the chunk jitted as one function; 'parts' = VAE "
            "encode + the lever's DiT + VAE decode, each jitted apart (levers that change "
            "the DiT only), compared with the base's parts. Predicted speed = FLOPs of the "
            "base / FLOPs of the lever (the cost model, realcam_jax/bench/cost.py, at this "
            "CPU's achieved FLOP rate); bytes-only levers (KV dtype, donation) are "
            "predicted at 1.00x."]
  return "\n".join(lines)
