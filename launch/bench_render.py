"""Synthetic-world renderer speed: frames/s at 64x64 and 256x256 on this machine.

  .venv/bin/python launch/bench_render.py --out /tmp/bench_render.json \\
      [--results docs/results/render.json]

Renders clips of `--frames` frames (one scene, its source camera) through the
same jitted path the dataset builder uses (chunks of 8 frames) and reports
frames per second by wall clock (best and median of `--repeats`) and frames
per CPU-second of this process (less disturbed by other programs sharing the
cores; XLA uses all cores, so on an idle machine wall fps can exceed it).
The first call (compilation + one render) is reported separately. `--results FILE`
writes a benchmark record (realcam_jax/bench/record.py) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np


def _bench(height, width, frames, repeats, seed):
  from realcam_jax.data import synthetic
  scene = synthetic.make_scene(seed)
  cams = synthetic.sample_rig(scene, seed, frames, width, height, 0)
  c2w, K = cams["source_c2w"], cams["intrinsics"]
  times = np.arange(frames, dtype=np.float32) / 15.0
  t0 = time.perf_counter()
  synthetic.render(scene, c2w, K, times, height, width)
  compile_s = time.perf_counter() - t0
  walls, cpus = [], []
  for _ in range(repeats):
    w0, c0 = time.perf_counter(), time.process_time()
    synthetic.render(scene, c2w, K, times, height, width)
    walls.append(time.perf_counter() - w0)
    cpus.append(time.process_time() - c0)
  best_wall, best_cpu = min(walls), min(cpus)
  return dict(height=height, width=width, frames=frames, repeats=repeats,
              first_call_s=round(compile_s, 3),
              fps_wall=round(frames / best_wall, 1),
              fps_wall_median=round(frames / float(np.median(walls)), 1),
              fps_per_cpu_second=round(frames / best_cpu, 1))


def table(results: list[dict]) -> str:
  """The markdown table of the per-size results."""
  from realcam_jax.bench.record import markdown_table
  return markdown_table(
      ["size", "frames/s (best)", "frames/s (median)", "frames per CPU-second",
       "first call (compile + render)"],
      [[f"{r['width']}x{r['height']}", r["fps_wall"], r["fps_wall_median"],
        r["fps_per_cpu_second"], f"{r['first_call_s']:.1f} s"] for r in results])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default=None, help="write results as JSON here")
  p.add_argument("--frames", type=int, default=33)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--sizes", default="64,256", help="comma-separated square sizes")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--results", default=None, metavar="FILE",
                 help="write a benchmark record here (e.g. docs/results/render.json)")
  p.add_argument("--notes", default=None, help="remark stored in the --results record")
  p.add_argument("--shared-cpu", action="store_true",
                 help="note in the record that the CPU was shared with other jobs")
  args = p.parse_args(sys.argv[1:] if argv is None else argv)
  import jax
  results = []
  for s in (int(x) for x in args.sizes.split(",")):
    r = _bench(s, s, args.frames, args.repeats, args.seed)
    print(f"{s}x{s}: {r['fps_wall']} frames/s wall (median {r['fps_wall_median']}), "
          f"{r['fps_per_cpu_second']} frames per CPU-second, first call {r['first_call_s']} s")
    results.append(r)
  info = dict(results=results, backend=jax.default_backend(), jax=jax.__version__,
              cpu_count=os.cpu_count(), machine=platform.processor() or platform.machine(),
              load_average=os.getloadavg())
  if args.out:
    with open(args.out, "w") as f:
      json.dump(info, f, indent=2)
    print(f"wrote {args.out}")
  if args.results:
    from realcam_jax.bench import record
    rec = record.make_record(
        record.name_of(args.results),
        f"synthetic world renderer, {args.frames}-frame clips (jitted ray caster)",
        record.command_line("python launch/bench_render.py", argv),
        dict(info, load_average=list(info["load_average"])), table(results),
        notes=record.notes(args.notes, args.shared_cpu))
    print(f"wrote {record.write_record(args.results, rec)}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
