"""DiT speed probe: compile time, forward time, tokens/s, achieved FLOP/s and MFU.

  .venv/bin/python launch/bench_dit.py --config configs/dit.py:demo [--config.x=y] \\
      [--iters 10] [--warmup 2] [--out results.jsonl] [--results docs/results/dit_demo.json]

Builds `WanDiT` with random weights (speed does not depend on the values),
jit-compiles the forward at the config's bench shape (`config.bench`: batch,
latent frames, latent height, width; text length = `model.text_len`), and
reports the compile time separately from the median forward time over `--iters`
calls after `--warmup` calls. FLOP/s uses `realcam_jax.models.flops.dit_flops`
(matmul FLOPs of the model; XLA's own estimate is printed next to it); on a chip
with a known bf16 peak (`realcam_jax.bench.record.PEAK_BF16_TFLOPS`) the model FLOP
utilisation (MFU) is reported too. Process CPU time per call is also reported: on a
shared CPU it is less disturbed by other programs than wall time.

`--attention best` tries the accelerator kernels in order (cudnn, xla, dot_product on
a GPU) and keeps the first that compiles; `--dry-run` builds the shapes with
`jax.eval_shape` and stops before allocating or compiling (any size, on any machine).
`--results FILE` writes a benchmark record (realcam_jax/bench/record.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

def parse_args(argv):
  from realcam_jax.config import split_overrides
  argv, overrides = split_overrides(list(argv))
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/dit.py:demo", help="e.g. configs/dit.py:demo")
  p.add_argument("--iters", type=int, default=10, help="timed forward calls")
  p.add_argument("--warmup", type=int, default=2, help="untimed calls after compiling")
  p.add_argument("--attention", default=None,
                 help="attention impl (default: the config's); 'best' = first that compiles")
  p.add_argument("--dry-run", action="store_true",
                 help="eval_shape the model and inputs, print the plan, stop before compiling")
  p.add_argument("--out", default=None, help="append the result as one JSON line here")
  p.add_argument("--results", default=None, metavar="FILE",
                 help="write a benchmark record here (e.g. docs/results/dit_demo.json)")
  p.add_argument("--notes", default=None, help="remark stored in the --results record")
  p.add_argument("--shared-cpu", action="store_true",
                 help="note in the record that the CPU was shared with other jobs")
  return p.parse_args(argv), overrides


def bench_shape(config) -> dict:
  """Batch, latent frames / height / width, text length and token count of the probe."""
  m, b = config.model, config.bench
  pt, ph, pw = m.patch_size
  tokens = b.batch * (b.frames // pt) * (b.height // ph) * (b.width // pw)
  return dict(batch=b.batch, frames=b.frames, height=b.height, width=b.width,
              text_len=m.text_len, tokens=tokens)


def inputs(config, shape, abstract: bool):
  """(x, t, ctx) at the probe shape: random arrays, or ShapeDtypeStructs if `abstract`."""
  import jax
  import jax.numpy as jnp
  m = config.model
  b, f, h, w = shape["batch"], shape["frames"], shape["height"], shape["width"]
  dtype = jnp.dtype(m.dtype)
  shapes = (((b, f, h, w, m.in_channels), dtype), ((b, f // m.patch_size[0]), jnp.float32),
            ((b, shape["text_len"], m.text_dim), dtype))
  if abstract:
    return tuple(jax.ShapeDtypeStruct(s, d) for s, d in shapes)
  keys = jax.random.split(jax.random.key(config.seed), 3)
  return (jax.random.normal(keys[0], *shapes[0]),
          jax.random.uniform(keys[1], *shapes[1], 0, 1000),
          jax.random.normal(keys[2], *shapes[2]))


def build(config, abstract: bool):
  """(forward fn, params state) of a random WanDiT (state abstract if `abstract`)."""
  import jax
  from flax import nnx
  from realcam_jax.models.dit import WanDiT
  m = config.model
  model = nnx.eval_shape(lambda: WanDiT(m, rngs=nnx.Rngs(config.seed)))
  graphdef = nnx.graphdef(model)
  state = nnx.state(model) if abstract else \
      jax.jit(lambda: nnx.state(WanDiT(m, rngs=nnx.Rngs(config.seed))))()
  return (lambda st, x, t, c: nnx.merge(graphdef, st)(x, t, c)), state


def compile_first(config, impls, state, args):
  """(compiled, impl, compile_s, failures) for the first impl in `impls` that compiles."""
  import jax
  failures = {}
  for impl in impls:
    config.model.attention_impl = impl
    fn, _ = build(config, abstract=True)     # the graphdef holds the impl; state is shared
    t0 = time.perf_counter()
    try:
      compiled = jax.jit(fn).lower(state, *args).compile()
    except Exception as e:  # noqa: BLE001 -- try the next kernel, report why
      failures[impl] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
      print(f"attention {impl}: failed to compile ({failures[impl]})", file=sys.stderr)
      continue
    return compiled, impl, time.perf_counter() - t0, failures
  raise SystemExit(f"error: no attention impl compiled: {failures}")


def time_calls(compiled, args, iters: int, warmup: int):
  """(wall seconds per call, CPU seconds per call) over `iters` calls after `warmup`."""
  for _ in range(warmup):
    compiled(*args).block_until_ready()
  walls, cpus = [], []
  for _ in range(iters):
    w0, c0 = time.perf_counter(), time.process_time()
    compiled(*args).block_until_ready()
    walls.append(time.perf_counter() - w0)
    cpus.append(time.process_time() - c0)
  return walls, cpus


def table(r: dict) -> str:
  """The markdown table of one probe result."""
  from realcam_jax.bench.record import markdown_table
  mfu = "–" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
  return markdown_table(
      ["config", "dtype / attention", "tokens", "params", "compile", "forward (median)",
       "tokens/s", "model FLOPs/call", "achieved", "MFU"],
      [[f"`{r['config']}`" + (f" {' '.join(r['overrides'])}" if r["overrides"] else ""),
        f"{r['dtype']} / {r['attention_impl']}",
        f"{r['tokens']:,} (B={r['batch']}, {r['frames']} frames of {r['height']}x{r['width']} "
        "latents)", f"{r['params'] / 1e6:.2f}M", f"{r['compile_s']:.2f} s",
        f"{r['forward_s_median'] * 1e3:.1f} ms (min {r['forward_s_min'] * 1e3:.1f})",
        f"{r['tokens_per_s']:,.0f}", f"{r['model_flops'] / 1e9:,.3f} GFLOP",
        f"{r['achieved_flops_per_s'] / 1e9:,.1f} GFLOP/s", mfu]])


def dry_run(config, shape, impls) -> int:
  """Prints parameter / input shapes and the FLOP count without compiling."""
  import jax
  from realcam_jax.models.flops import dit_flops, dit_params
  config.model.attention_impl = impls[0]
  fn, state = build(config, abstract=True)
  args = inputs(config, shape, abstract=True)
  out = jax.eval_shape(fn, state, *args)
  flops = dit_flops(config, shape["frames"], shape["height"], shape["width"],
                    shape["text_len"], batch=shape["batch"])
  print(f"dry run: {dit_params(config) / 1e6:.1f}M params, inputs "
        f"{[tuple(a.shape) for a in args]}, output {out.dtype}{list(out.shape)}, "
        f"{shape['tokens']} tokens, {flops / 1e12:.2f} TFLOP per forward; attention would "
        f"try {impls}; stopping before compiling")
  return 0


def main(argv=None) -> int:
  from realcam_jax.config import get_config
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)

  import jax
  from realcam_jax.bench import record
  from realcam_jax.models.flops import dit_flops, dit_params

  config = get_config(args.config, overrides)
  m, shape = config.model, bench_shape(config)
  impls = record.attention_candidates(args.attention, m.attention_impl, jax.default_backend())
  print(f"jax {jax.__version__} devices: {jax.devices()}")
  print(f"config {args.config} {' '.join(overrides)}: dim {m.dim}, {m.num_layers} layers, "
        f"{m.num_heads} heads, {dit_params(config) / 1e6:.2f}M params, dtype {m.dtype}, "
        f"attention {impls}; input B={shape['batch']} F={shape['frames']} "
        f"h={shape['height']} w={shape['width']} Lt={shape['text_len']} -> "
        f"{shape['tokens']} tokens")
  if args.dry_run:
    return dry_run(config, shape, impls)

  _, state = build(config, abstract=False)
  x, t, ctx = inputs(config, shape, abstract=False)
  compiled, impl, compile_s, failures = compile_first(config, impls, state, (x, t, ctx))
  try:
    xla_flops = float(compiled.cost_analysis().get("flops", float("nan")))
  except Exception:  # noqa: BLE001 -- cost analysis is optional per backend
    xla_flops = float("nan")
  walls, cpus = time_calls(compiled, (state, x, t, ctx), args.iters, args.warmup)
  fwd_s = float(np.median(walls))
  flops = dit_flops(config, shape["frames"], shape["height"], shape["width"],
                    shape["text_len"], batch=shape["batch"])
  kind = jax.devices()[0].device_kind
  result = dict(
      config=args.config, overrides=overrides, backend=jax.default_backend(),
      devices=[str(d) for d in jax.devices()], device_kind=kind, jax=jax.__version__,
      **shape, params=dit_params(config), dtype=m.dtype, param_dtype=m.param_dtype,
      attention_impl=impl, attention_failures=failures, compile_s=round(compile_s, 3),
      forward_s_median=round(fwd_s, 5), forward_s_min=round(min(walls), 5),
      forward_cpu_s_median=round(float(np.median(cpus)), 5), iters=args.iters,
      tokens_per_s=round(shape["tokens"] / fwd_s, 1), model_flops=flops, xla_flops=xla_flops,
      achieved_flops_per_s=flops / fwd_s, mfu=record.mfu(flops / fwd_s, kind, m.dtype),
      peak_flops_per_s=record.peak_flops(kind, m.dtype), cpu_count=os.cpu_count(),
      load_average=[round(v, 2) for v in os.getloadavg()])
  mfu = "" if result["mfu"] is None else f"; MFU {100 * result['mfu']:.1f}% of {kind}"
  print(f"compile {compile_s:.2f} s; forward {fwd_s * 1e3:.2f} ms median over {args.iters} "
        f"(min {min(walls) * 1e3:.2f} ms, CPU time {np.median(cpus) * 1e3:.2f} ms); "
        f"{shape['tokens'] / fwd_s:,.0f} tokens/s; model {flops / 1e9:.3f} GFLOP/call "
        f"(XLA cost analysis, which counts a scanned layer once: {xla_flops / 1e9:.3f}) -> "
        f"{flops / fwd_s / 1e9:.2f} GFLOP/s{mfu}; load average {result['load_average']}")
  if args.out:
    with open(args.out, "a") as fh:
      fh.write(json.dumps(result) + "\n")
  if args.results:
    size = args.config.rsplit(":", 1)[-1]
    rec = record.make_record(
        record.name_of(args.results), f"DiT forward probe, {size} ({m.dtype}, {impl})",
        record.command_line("python launch/bench_dit.py", argv), result, table(result),
        notes=record.notes(args.notes, args.shared_cpu))
    print(f"wrote {record.write_record(args.results, rec)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
