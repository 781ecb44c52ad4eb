"""`realcam bench`: streaming student speed vs video length, and the offline baselines.

  realcam bench --config student:demo --out runs/bench_demo

Random weights by default (speed does not depend on them; they are perturbed so that
outputs depend on the inputs), `--student` / `--vae` for trained ones. Every student
stream plays one synthetic scene in a loop and reports each chunk's output drift from
its first occurrence beside its latency (`realcam_jax/bench/stream.py`). Systems
(`--systems`):
  student         streaming session, unlimited KV cache (sized for the whole stream)
  student_window  streaming session, rolling window + sink (constant cache)
  teacher         bidirectional teacher, whole video, config.sampler steps + CFG
  prefix          ReCamMaster prefix layout (`teacher:SIZE,prefix`), whole video
Lengths (`--lengths`) are multiples of the student's training length; the offline
systems run `--offline-lengths` (default 1,2) under the `--max-seconds` guard.
Writes DIR/bench.json, DIR/bench.md and DIR/latency_vs_length.png (realcam_jax/bench/);
`--results FILE` also writes a benchmark record for docs/benchmarks.md
(realcam_jax/bench/record.py). `--dry-run` builds the student's chunk-step shapes with
`jax.eval_shape` (any size, nothing allocated or compiled) and stops.

Every run (and `--dry-run`) also prints the cost model (realcam_jax/bench/cost.py): per
generated frame, for the student as configured and each speed lever (steps, window, KV
cache dtype, source_once), the analytic FLOPs and HBM bytes and the frames/s they
predict on an H100 at bf16 (roofline), so a CPU run predicts GPU speed.
`--config.model.*` overrides (dtype, attention_impl) also apply to the teacher and the
prefix baseline, which share the student's architecture.
"""

from __future__ import annotations

import datetime
import io
import os
import sys
import types

from realcam_jax.cli import UserError
from realcam_jax.cli import render as render_cli

HELP = "latency / frames/s vs video length of the streaming student and the offline baselines"
SYSTEMS = ("student", "student_window", "teacher", "prefix")
DEFAULT_OUT = os.path.join("runs", "bench")
SHARED_NOTE = ("The CPU was shared with other jobs while this ran (see the load average): "
               "timings are pessimistic and noisy.")


def add_arguments(parser):
  parser.add_argument("--config", default="student:demo",
                      help="student config FILE[:ARG] (default student:demo)")
  parser.add_argument("--teacher-config", metavar="CONFIG",
                      help="teacher config (default teacher:SIZE of the student); the prefix "
                           "baseline adds ',prefix'")
  parser.add_argument("--lengths", default="1,2,5,10",
                      help="student video lengths in multiples of the training length "
                           "(default 1,2,5,10)")
  parser.add_argument("--offline-lengths", default="1,2",
                      help="teacher / prefix lengths (default 1,2)")
  parser.add_argument("--systems", default=",".join(SYSTEMS),
                      help=f"comma-separated subset of {','.join(SYSTEMS)} (default all)")
  parser.add_argument("--max-seconds", type=float, default=300.0,
                      help="skip an offline run whose extrapolated time exceeds this "
                           "(default 300)")
  parser.add_argument("--size", metavar="HxW", help="frame size (default: the config's)")
  parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
  parser.add_argument("--note", default=SHARED_NOTE,
                      help="a remark for bench.md (default: the CPU was shared); '' for none")
  parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                      help=f"output folder (default {DEFAULT_OUT})")
  parser.add_argument("--results", metavar="FILE",
                      help="also write a benchmark record here (docs/results/NAME.json)")
  parser.add_argument("--student", metavar="CKPT",
                      help="student checkpoint (default: random weights, perturbed so that the "
                           "drift column means something; speed does not depend on them)")
  parser.add_argument("--vae", metavar="CKPT", help="VAE checkpoint (default: random weights)")
  parser.add_argument("--offline-vae", choices=("whole", "chunks"), default="whole",
                      help="how the offline systems' VAE is timed in their estimate: one call "
                           "on the whole video (default) or chunk by chunk through the "
                           "streaming VAE, as Wan runs it (the same FLOPs, constant memory: "
                           "full-size videos)")
  parser.add_argument("--dry-run", action="store_true",
                      help="print the student's chunk shapes (jax.eval_shape) and stop")


def parse_multiples(text: str, flag: str) -> list[int]:
  """'1,2,5' -> [1, 2, 5] (sorted, unique); UserError otherwise."""
  try:
    values = sorted({int(x) for x in str(text).split(",") if x.strip()})
  except ValueError:
    values = []
  if not values or values[0] < 1:
    raise UserError(f"{flag} {text!r}: expected comma-separated positive integers, e.g. 1,2,5")
  return values


def parse_systems(text: str) -> list[str]:
  names = [x.strip() for x in str(text).split(",") if x.strip()]
  bad = [n for n in names if n not in SYSTEMS]
  if not names or bad:
    raise UserError(f"--systems {text!r}: unknown {bad[0]!r}; expected a comma-separated subset "
                    f"of {','.join(SYSTEMS)}" if bad else f"--systems {text!r} is empty")
  return [n for n in SYSTEMS if n in names]


def teacher_configs(args, config, overrides=()) -> tuple[str, dict]:
  """(teacher config name, {system: config}) for the offline systems.

  Without `--teacher-config` both take the sampler of the student's embedded teacher
  (`config.teacher.sampler`), so `--config.teacher.sampler.cfg_scale=5.0` times them
  with guidance (two passes per step). The `--config.model.*` overrides apply to them
  too (dtype, attention_impl: the same architecture as the student).
  """
  import copy

  from realcam_jax.config import get_config
  name = args.teacher_config or f"teacher:{config.model.get('size', 'tiny')}"
  prefix = name if name.endswith(",prefix") else f"{name},prefix"
  out = {}
  for system, spec in (("teacher", name), ("prefix", prefix)):
    if system in args.systems_list:
      out[system] = get_config(spec, [o for o in overrides if o.startswith("--config.model.")])
      if not args.teacher_config and "teacher" in config:
        out[system].sampler = copy.deepcopy(config.teacher.sampler)
  return name, out


def _say(msg: str):
  print(msg, file=sys.stderr, flush=True)


def _student_line(system, row):
  return (f"{system} {row['multiple']}x: {row['chunks']} chunks, "
          f"first {row['first_chunk_latency_s']:.3f} s, "
          f"median {row['median_chunk_latency_s']:.3f} s/chunk, "
          f"{row['steady_fps'] or float('nan'):.1f} frames/s, "
          f"drift max {row['drift_max'] if row['drift_max'] is not None else float('nan'):.2e}")


def _offline_line(system, row):
  if "skipped" in row:
    return f"{system} {row['multiple']}x: {row['skipped']}"
  return (f"{system} {row['multiple']}x: whole video {row['video_s']:.2f} s "
          f"(compile {row['compile_s']:.1f} s), {row['fps']:.2f} frames/s")


def run(args, overrides) -> int:
  from realcam_jax.bench import offline, report, stream

  lengths = parse_multiples(args.lengths, "--lengths")
  offline_lengths = parse_multiples(args.offline_lengths, "--offline-lengths")
  args.systems_list = parse_systems(args.systems)
  if not args.max_seconds > 0:
    raise UserError(f"--max-seconds must be a positive number, got {args.max_seconds}")
  if os.path.exists(args.out) and not os.path.isdir(args.out):
    raise UserError(f"--out {args.out} exists and is not a folder")
  config = render_cli.load_config(args, overrides)
  if args.dry_run:
    return dry_run(args, config, lengths)
  teacher_name, teachers = teacher_configs(args, config, overrides)
  from realcam_jax.bench import record as bench_record
  results = {"command": getattr(args, "command_line", "realcam bench"),
             "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
             "machine": bench_record.machine(), "config": args.config, "teacher_config": teacher_name,
             "fps_target": 15.0, "note": args.note or None, "systems": {}}
  random_weights = not (args.student or args.vae)
  config, graphdef, params, vae = render_cli.load(  # random weights: no warning needed
      types.SimpleNamespace(student=args.student, vae=args.vae, random_weights=random_weights,
                            config=args.config), config, out=io.StringIO())
  if random_weights:   # non-zero heads, so outputs depend on the inputs and the history
    from realcam_jax.testing import perturb
    params = perturb(params)
    results["weights"] = "random weights (speed only; perturbed, for the drift column)"
  else:
    results["weights"] = f"weights: student {args.student or 'bundled'}, vae {args.vae or 'bundled'}"
  for system, tc in teachers.items():
    if int(tc.model.in_channels) != vae.z_dim:
      raise UserError(f"--teacher-config {teacher_name}: the {system} takes "
                      f"{tc.model.in_channels} latent channels but the student's VAE has "
                      f"{vae.z_dim}; use the teacher of the same size")
  height, width = render_cli.parse_size(args.size, config, vae)
  results["size"] = [height, width]
  results["cost_model"] = cost_model(config, args.systems_list, height, width)
  print(report.cost_markdown(results["cost_model"]), file=sys.stderr, flush=True)
  frames_1x = int(config.data.latent_frames)
  for system in args.systems_list:
    if system in report.STUDENT_SYSTEMS:
      _say(f"{system}: lengths {lengths} x {frames_1x} latent frames")
      results["systems"][system] = stream.bench_student(
          config, graphdef, params, vae, height, width, lengths,
          window=system == "student_window", seed=args.seed,
          progress=lambda r, s=system: _say(_student_line(s, r)))
    else:
      _say(f"{system}: lengths {offline_lengths}, {teachers[system].sampler.steps} steps")
      results["systems"][system] = offline.bench_offline(
          teachers[system], vae, height, width, offline_lengths, frames_1x=frames_1x,
          system=system, max_seconds=args.max_seconds, seed=args.seed, vae_mode=args.offline_vae,
          progress=lambda r, s=system: _say(_offline_line(s, r)))
  paths = report.write(report.finish(results), args.out)
  print(report.markdown(results))
  print(f"wrote {', '.join(paths.values())}")
  if args.results:
    from realcam_jax.bench import convert, record
    rec = convert.from_stream_bench(results, record.name_of(args.results))
    print(f"wrote {record.write_record(args.results, rec)}")
  return 0


def cost_model(config, systems, height: int, width: int) -> dict:
  """The cost-model table (bench/cost.py) of the student as it streams here: with the
  rolling window when student_window runs, at bf16 on an H100."""
  from realcam_jax.bench import cost, stream
  from realcam_jax.inference.load import vae_config_for
  streamed = stream.with_window(config) if "student_window" in systems else config
  return cost.table(streamed, vae_config_for(config).model, height, width)


def dry_run(args, config, lengths) -> int:
  """`--dry-run`: eval_shape the student systems' chunk steps at the longest length."""
  import json

  from realcam_jax.bench import stream
  graphdef, params, vae = stream.abstract_models(config)
  height, width = render_cli.parse_size(args.size, config, vae)
  for system in args.systems_list:
    if system not in ("student", "student_window"):
      _say(f"{system}: skipped by --dry-run (offline systems are not planned)")
      continue
    plan = stream.dry_run(config, graphdef, params, vae, height, width,
                          window=system == "student_window", multiple=max(lengths))
    print(json.dumps(plan))
  from realcam_jax.bench import report
  _say(report.cost_markdown(cost_model(config, args.systems_list, height, width)))
  _say("dry run: stopping before allocating or compiling")
  return 0

