"""Compile-time memory analysis of the teacher training step on the real device(s).

  python launch/bench_train_memory.py --config configs/teacher.py:wan2_1_1_3b \\
      [--remats full] [--attention best] [--results docs/results/gpu_train_memory.json]

Lowers and compiles the teacher train step (`train.teacher.make_train_step`: loss,
gradient, AdamW update; state donated) at batch 1 per device on a one-device mesh
(`realcam_jax/scale/memory_plan.py` `compiled_step`, bf16 activations), and reports
XLA's `memory_analysis()`: argument, output, alias and temp bytes and their total,
against the device's memory (`memory_stats()['bytes_limit']` where the backend has
it). Nothing runs: only compiles. `--dry-run` prints the parameter / optimizer-state
bytes from `jax.eval_shape` and stops before compiling. docs/scaling.md has the
multi-device plan made the same way on a fake CPU mesh.
"""

from __future__ import annotations

import argparse
import sys

GB = 1e9


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/teacher.py:wan2_1_1_3b", help="teacher config")
  p.add_argument("--remats", default="full",
                 help="comma-separated remat policies to compile (default full)")
  p.add_argument("--attention", default="best",
                 help="attention impl, or 'best' = first that compiles (cudnn on a GPU)")
  p.add_argument("--dtype", default="bfloat16", help="activation dtype (default bfloat16)")
  p.add_argument("--dry-run", action="store_true",
                 help="eval_shape the train state, print its bytes, stop before compiling")
  p.add_argument("--results", default=None, metavar="FILE", help="write a benchmark record")
  p.add_argument("--notes", default=None, help="remark stored in the --results record")
  return p.parse_args(argv)


def device_limit_bytes(device) -> int | None:
  """Bytes the backend lets one device use (None where it does not say, e.g. CPU)."""
  try:
    stats = device.memory_stats() or {}
  except Exception:  # noqa: BLE001 -- not every backend has memory_stats
    return None
  return stats.get("bytes_limit")


def compile_one(config, remat: str, impls: list[str], dtype: str) -> dict:
  """Memory of the compiled step for `remat`, with the first attention impl that compiles."""
  from realcam_jax.scale import memory_plan as mp
  failures = {}
  for impl in impls:
    c = mp.plan_config(config, remat=remat, attention_impl=impl, dtype=dtype)
    try:
      out = mp.compiled_step(c, mp.MeshShape())
    except Exception as e:  # noqa: BLE001 -- try the next kernel, report why
      failures[impl] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
      print(f"remat {remat}, attention {impl}: failed ({failures[impl]})", file=sys.stderr)
      continue
    return dict(out, remat=remat, attention_impl=impl, attention_failures=failures)
  return dict(remat=remat, attention_impl=None, attention_failures=failures)


def table(rows: list[dict], limit: int | None) -> str:
  from realcam_jax.bench.record import markdown_table
  lim = "–" if limit is None else f"{limit / GB:.1f}"
  body = []
  for r in rows:
    if r.get("attention_impl") is None:
      body.append([r["remat"], "failed", "–", "–", "–", "–", "–", lim, "–"])
      continue
    fits = "–" if limit is None else ("yes" if r["total"] <= limit else "**no**")
    body.append([r["remat"], r["attention_impl"], f"{r['argument'] / GB:.2f}",
                 f"{r['output'] / GB:.2f}", f"{r['alias'] / GB:.2f}", f"{r['temp'] / GB:.2f}",
                 f"{r['total'] / GB:.2f}", lim, fits])
  return markdown_table(["remat", "attention", "argument GB", "output GB", "alias GB",
                         "temp GB", "total GB", "device limit GB", "fits"], body)


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse_args(argv)
  import jax

  from realcam_jax.bench import record
  from realcam_jax.config import get_config
  from realcam_jax.scale import memory_plan as mp

  config = get_config(args.config)
  d = config.data
  print(f"jax {jax.__version__} devices: {jax.devices()}; teacher {args.config}: "
        f"{mp.tokens_per_sample(config)} tokens per sample ({d.latent_frames} latent frames of "
        f"{d.latent_height}x{d.latent_width}, interleaved)")
  state = mp.state_bytes(mp.plan_config(config, remat="full", dtype=args.dtype), mp.MeshShape())
  print(f"train state per device: {state['num_params'] / 1e6:.1f}M params, params "
        f"{state['params'] / GB:.2f} GB, optimizer {state['opt_state'] / GB:.2f} GB, "
        f"grads {state['grads'] / GB:.2f} GB")
  if args.dry_run:
    print("dry run: stopping before compiling")
    return 0
  impls = record.attention_candidates(args.attention, "blockwise", jax.default_backend())
  if args.attention == "best" and jax.default_backend() == "cpu":
    impls = ["blockwise"]
  rows = [compile_one(config, r, impls, args.dtype) for r in args.remats.split(",") if r]
  limit = device_limit_bytes(jax.devices()[0])
  for r in rows:
    if r.get("attention_impl"):
      print(f"remat {r['remat']} ({r['attention_impl']}): temp {r['temp'] / GB:.2f} GB, total "
            f"{r['total'] / GB:.2f} GB per device, compiled in {r['compile_s']:.1f} s")
  numbers = dict(config=args.config, dtype=args.dtype, state=state, rows=rows,
                 device_kind=jax.devices()[0].device_kind, device_limit_bytes=limit,
                 tokens_per_sample=mp.tokens_per_sample(config), batch_per_device=1)
  text = table(rows, limit)
  print(text)
  if args.results:
    rec = record.make_record(
        record.name_of(args.results),
        f"teacher training step, compile-time memory per device ({args.config}, batch 1, "
        f"{args.dtype}, AdamW)", record.command_line("python launch/bench_train_memory.py", argv),
        numbers, text, notes=record.notes(args.notes))
    print(f"wrote {record.write_record(args.results, rec)}")
  return 0 if all(r.get("attention_impl") for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
