"""Full-size memory plan: parameters, optimizer state, gradients and activations per device.

  python launch/plan_memory.py --out docs/scaling_tables.md --json out/memory_plan.json

Uses the real model and trainer: eval_shape for the sharded state at any mesh size,
the compiled teacher train step on a fake CPU mesh (`--devices` devices, one per
`--xla_force_host_platform_device_count`) for activations and workspace under each
remat policy and context size, and JAX's saved-residual listing. Needs no accelerator;
each compile takes about a minute on 2 CPU cores. See docs/scaling.md.
"""

import argparse
import json
import os
import sys


def _ints(text):
  return [int(x) for x in text.split(",") if x]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--stages", default="teacher,dmd", help="teacher and/or dmd")
  p.add_argument("--config", default="configs/teacher.py:wan2_1_1_3b", help="teacher config")
  p.add_argument("--student_config", default="configs/student.py:wan2_1_1_3b",
                 help="DMD (student) config")
  p.add_argument("--dmd_contexts", type=_ints, default=[1, 2, 4, 8])
  p.add_argument("--dmd_remats", default="full")
  p.add_argument("--devices", type=int, default=8, help="fake CPU devices of the compiled mesh")
  p.add_argument("--contexts", type=_ints, default=[1, 2, 4, 8], help="context axis sizes")
  p.add_argument("--remats", default="full,dots_with_no_batch_dims_saveable,none,dots_saveable")
  p.add_argument("--chips", type=_ints, default=[8, 16, 32, 64, 128, 256],
                 help="slice sizes for the per-device totals")
  p.add_argument("--fsdp_check", type=_ints, default=[4, 16],
                 help="extra fsdp sizes compiled to check fsdp-independence of activations")
  p.add_argument("--dense_check", action="store_true", help="also compile dense attention")
  p.add_argument("--samples", type=int, default=1, help="samples per batch shard (teacher)")
  p.add_argument("--out", default=None, help="markdown file for the tables")
  p.add_argument("--json", default=None, help="raw results")
  p.add_argument("--from_json", default=None,
                 help="render the tables from a --json file of an earlier run (no measuring)")
  p.add_argument("--command", default=None,
                 help="with --from_json: the command that measured it, for the tables' header")
  args = p.parse_args(argv)
  stages = [x for x in args.stages.split(",") if x]
  if not stages or set(stages) - {"teacher", "dmd"}:
    p.error(f"--stages {args.stages!r}: expected teacher and/or dmd")
  bad = [c for c in args.contexts + args.dmd_contexts if args.devices % c]
  if bad:
    p.error(f"--contexts {bad} do not divide --devices {args.devices}")

  needed = max([args.devices] + list(args.fsdp_check))
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={needed}")
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  from realcam_jax.config import ConfigError, get_config
  from realcam_jax.scale import plan_report
  command = "python launch/plan_memory.py " + " ".join(sys.argv[1:] if argv is None else argv)
  command = command.strip()
  texts, raw = [], {}
  if args.from_json:
    with open(args.from_json) as f:
      raw = plan_report.from_json(json.load(f))
    if "teacher" in raw and "teacher" in stages:
      texts.append(plan_report.to_markdown(raw["teacher"], args.command or command))
    if "dmd" in raw and "dmd" in stages:
      texts.append(plan_report.dmd_markdown(raw["dmd"], args.command or command))
    stages = []
  try:
    if "teacher" in stages:
      config = get_config(args.config)
      res = plan_report.run_plan(config, contexts=args.contexts, remats=args.remats.split(","),
                                 devices=args.devices, chip_counts=args.chips,
                                 fsdp_check=args.fsdp_check, dense_check=args.dense_check,
                                 samples=args.samples)
      texts.append(plan_report.to_markdown(res, command))
      raw["teacher"] = plan_report.to_json(res)
    if "dmd" in stages:
      config = get_config(args.student_config)
      res = plan_report.run_dmd_plan(config, contexts=args.dmd_contexts,
                                     remats=args.dmd_remats.split(","), devices=args.devices,
                                     chip_counts=args.chips)
      texts.append(plan_report.dmd_markdown(res, command))
      raw["dmd"] = plan_report.to_json(res)
  except ConfigError as e:
    p.error(str(e))
  text = "\n".join(texts)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text)
  if args.json and not args.from_json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(raw, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
