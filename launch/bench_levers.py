"""Speed levers of the streaming student, timed in one run beside the cost model (issue 22).

  nice -n 10 python launch/bench_levers.py --shared-cpu \\
      --results docs/results/levers_demo.json

Times 3 vs 4 steps, the window size, a bf16 KV cache, caches donated across chunks, all
three together, and the VAE's share of a chunk, on steady chunks of `--config` (default
`student:demo`, random weights) at its data size (`--size HxW` otherwise); see
realcam_jax/bench/levers.py for the protocol. Prints the measured table beside the cost
model's prediction, then the cost model of the same levers at full size on an H100
(`--full-config`), and with `--results FILE` writes a benchmark record for
docs/benchmarks.md. `--tiny` runs student:tiny at 16x16 with 1 round (a smoke test).
"""

from __future__ import annotations

import argparse
import sys
import time


def full_size_table(name: str) -> str:
  """The cost model of the levers for the full-size student, streaming with a window."""
  from realcam_jax.bench import cost, stream
  from realcam_jax.config import get_config
  from realcam_jax.inference.load import vae_config_for
  c = stream.with_window(get_config(name))
  h, w = 8 * int(c.data.latent_height), 8 * int(c.data.latent_width)
  return cost.markdown(cost.table(c, vae_config_for(c).model, h, w), "####")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="student:demo", help="student config (default student:demo)")
  p.add_argument("--size", metavar="HxW", help="frame size (default: the config's data size)")
  p.add_argument("--rounds", type=int, default=5, help="round-robin rounds (default 5)")
  p.add_argument("--chunks", type=int, default=3, help="chunks per variant per round (default 3)")
  p.add_argument("--full-config", default="student:wan2_1_1_3b",
                 help="config of the full-size cost-model table (default student:wan2_1_1_3b)")
  p.add_argument("--tiny", action="store_true", help="student:tiny at 16x16, 1 round of 1 chunk")
  p.add_argument("--results", metavar="FILE", help="write a benchmark record here")
  p.add_argument("--notes", default=None, help="remark stored in the record")
  p.add_argument("--shared-cpu", action="store_true",
                 help="note in the record that the CPU was shared with other jobs")
  argv = sys.argv[1:] if argv is None else argv
  args, overrides = p.parse_known_args(argv)
  bad = [o for o in overrides if not o.startswith("--config.")]
  if bad:
    p.error(f"unrecognized arguments: {' '.join(bad)}")
  if args.tiny:
    args.config, args.size, args.rounds, args.chunks = "student:tiny", "16x16", 1, 1
  from realcam_jax.bench import levers, record
  from realcam_jax.config import get_config
  config = get_config(args.config, overrides)
  if args.size:
    height, width = (int(x) for x in args.size.lower().split("x"))
  else:
    height, width = 8 * int(config.data.latent_height), 8 * int(config.data.latent_width)
  t0 = time.perf_counter()
  numbers = levers.run(config, height, width, rounds=args.rounds, chunks=args.chunks,
                       say=lambda s: print(s, file=sys.stderr, flush=True))
  numbers["wall_s"] = time.perf_counter() - t0
  numbers["config"] = args.config
  text = levers.table(numbers)
  full = full_size_table(args.full_config)
  numbers["full_size_config"] = args.full_config
  text += ("\n\n#### The same levers at full size (`" + args.full_config + "`, rolling window), "
           "cost model only\n\n" + full.split("\n", 2)[2])
  print(text)
  print(f"\n({numbers['wall_s']:.0f} s in all)")
  if args.results:
    rec = record.make_record(
        record.name_of(args.results),
        f"speed levers of the streaming student `{args.config}` at {width}x{height}, measured "
        "beside the cost model; random weights",
        record.command_line("python launch/bench_levers.py", argv), numbers, text,
        notes=record.notes(args.notes, args.shared_cpu))
    print(f"wrote {record.write_record(args.results, rec)}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
