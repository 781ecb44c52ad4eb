"""Converts outputs written earlier into benchmark records (docs/results/NAME.json).

  python launch/record_results.py stream runs/bench_demo/bench.json \\
      --results docs/results/stream_demo.json
  python launch/record_results.py eval runs/eval_demo/results.json \\
      --results docs/results/eval_demo.json
  python launch/record_results.py vae checkpoints/vae_demo/meta.json \\
      --results docs/results/vae_demo.json [--command "python launch/train_vae.py ..."]

`stream` keeps the bench's own command, machine and date. `eval` and `vae` outputs do
not store the machine, so the record describes this machine (run the conversion where
the numbers were measured); `vae` takes its date from meta.json's modification time and
`eval` from results.json's. Then regenerate the doc: python launch/make_benchmarks_doc.py
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("kind", choices=("stream", "eval", "vae"), help="what wrote INPUT")
  p.add_argument("input", help="bench.json, results.json or the exported VAE's meta.json")
  p.add_argument("--results", required=True, metavar="FILE", help="record to write")
  p.add_argument("--command", default=None,
                 help="the command that produced INPUT (default: the one it stores, or for "
                      "vae the demo export command)")
  p.add_argument("--notes", default=None, help="remark stored in the record")
  args = p.parse_args(argv)

  from realcam_jax.bench import convert, record
  with open(args.input) as f:
    data = json.load(f)
  name = record.name_of(args.results)
  date = convert.file_date(args.input)
  if args.kind == "stream":
    if args.command:
      data["command"] = args.command
    rec = convert.from_stream_bench(data, name, notes=args.notes)
  elif args.kind == "eval":
    if args.command:
      data["command"] = args.command
    rec = convert.from_eval(data, name, date=date, notes=args.notes)
  else:
    rec = convert.from_vae_meta(data, name, command=args.command or convert.VAE_COMMAND,
                                date=date, notes=args.notes)
  print(f"wrote {record.write_record(args.results, rec)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
