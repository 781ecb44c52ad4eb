"""DiT speed probe: compile time, forward time, tokens/s and achieved FLOP/s.

  .venv/bin/python launch/bench_dit.py --config configs/dit.py:demo [--config.x=y] \\
      [--iters 10] [--warmup 2] [--out results.jsonl]

Builds `WanDiT` with random weights (speed does not depend on the values),
jit-compiles the forward at the config's bench shape (`config.bench`: batch,
latent frames, latent height, width; text length = `model.text_len`), and
reports the compile time separately from the median forward time over `--iters`
calls after `--warmup` calls. FLOP/s uses `realcam_jax.models.flops.dit_flops`
(matmul FLOPs of the model; XLA's own estimate is printed next to it).
Process CPU time per call is also reported: on a shared CPU it is less
disturbed by other programs than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv=None) -> int:
  from realcam_jax.config import get_config, split_overrides
  argv = list(sys.argv[1:] if argv is None else argv)
  argv, overrides = split_overrides(argv)
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/dit.py:demo", help="e.g. configs/dit.py:demo")
  p.add_argument("--iters", type=int, default=10, help="timed forward calls")
  p.add_argument("--warmup", type=int, default=2, help="untimed calls after compiling")
  p.add_argument("--out", default=None, help="append the result as one JSON line here")
  args = p.parse_args(argv)

  import jax
  import jax.numpy as jnp
  from flax import nnx

  from realcam_jax.models.dit import WanDiT
  from realcam_jax.models.flops import dit_flops, dit_params

  config = get_config(args.config, overrides)
  m, bench = config.model, config.bench
  print(f"jax {jax.__version__} devices: {jax.devices()}")
  b, f, h, w, lt = bench.batch, bench.frames, bench.height, bench.width, m.text_len
  _, ph, pw = m.patch_size
  tokens = b * (f // m.patch_size[0]) * (h // ph) * (w // pw)
  print(f"config {args.config} {' '.join(overrides)}: dim {m.dim}, {m.num_layers} layers, "
        f"{m.num_heads} heads, {dit_params(config) / 1e6:.2f}M params, dtype {m.dtype}, "
        f"attention {m.attention_impl}; input B={b} F={f} h={h} w={w} Lt={lt} -> {tokens} tokens")

  abstract = nnx.eval_shape(lambda: WanDiT(m, rngs=nnx.Rngs(config.seed)))
  graphdef = nnx.graphdef(abstract)
  state = jax.jit(lambda: nnx.state(WanDiT(m, rngs=nnx.Rngs(config.seed))))()
  keys = jax.random.split(jax.random.key(config.seed), 3)
  dtype = jnp.dtype(m.dtype)
  x = jax.random.normal(keys[0], (b, f, h, w, m.in_channels), dtype)
  t = jax.random.uniform(keys[1], (b, f // m.patch_size[0]), jnp.float32, 0, 1000)
  ctx = jax.random.normal(keys[2], (b, lt, m.text_dim), dtype)
  forward = jax.jit(lambda st, x, t, c: nnx.merge(graphdef, st)(x, t, c))

  t0 = time.perf_counter()
  compiled = forward.lower(state, x, t, ctx).compile()
  compile_s = time.perf_counter() - t0
  try:
    xla_flops = float(compiled.cost_analysis().get("flops", float("nan")))
  except Exception:  # noqa: BLE001 -- cost analysis is optional per backend
    xla_flops = float("nan")
  for _ in range(args.warmup):
    compiled(state, x, t, ctx).block_until_ready()
  walls, cpus = [], []
  for _ in range(args.iters):
    w0, c0 = time.perf_counter(), time.process_time()
    compiled(state, x, t, ctx).block_until_ready()
    walls.append(time.perf_counter() - w0)
    cpus.append(time.process_time() - c0)
  fwd_s = float(np.median(walls))
  flops = dit_flops(config, f, h, w, lt, batch=b)
  result = dict(
      config=args.config, overrides=overrides, backend=jax.default_backend(),
      devices=[str(d) for d in jax.devices()], jax=jax.__version__, batch=b, frames=f, height=h,
      width=w, text_len=lt, tokens=tokens, params=dit_params(config), dtype=m.dtype,
      attention_impl=m.attention_impl, compile_s=round(compile_s, 3),
      forward_s_median=round(fwd_s, 5), forward_s_min=round(min(walls), 5),
      forward_cpu_s_median=round(float(np.median(cpus)), 5), iters=args.iters,
      tokens_per_s=round(tokens / fwd_s, 1), model_flops=flops, xla_flops=xla_flops,
      achieved_flops_per_s=flops / fwd_s, cpu_count=os.cpu_count(),
      load_average=[round(v, 2) for v in os.getloadavg()])
  print(f"compile {compile_s:.2f} s; forward {fwd_s * 1e3:.2f} ms median over {args.iters} "
        f"(min {min(walls) * 1e3:.2f} ms, CPU time {np.median(cpus) * 1e3:.2f} ms); "
        f"{tokens / fwd_s:,.0f} tokens/s; model {flops / 1e9:.3f} GFLOP/call "
        f"(XLA cost analysis, which counts a scanned layer once: {xla_flops / 1e9:.3f}) -> "
        f"{flops / fwd_s / 1e9:.2f} GFLOP/s; "
        f"load average {result['load_average']}")
  if args.out:
    with open(args.out, "a") as fh:
      fh.write(json.dumps(result) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
