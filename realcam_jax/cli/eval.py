"""`realcam eval`: student, teacher, prefix baseline and copy-source on held-out scenes.

    realcam eval --config student:demo --split test --student W --teacher T --prefix P \\
        --vae VAE --num-scenes 16 --cases identity,presets,clip,loop \\
        --lengths shorter,short,long --out eval/

Every system and every reference built from the truth (VAE round trip, Gaussian blurs,
row mean) runs on the same synthetic scenes (the split's clips, rendered with the
dataset's seeds) and the same target trajectories at a fixed per-frame camera speed
(realcam_jax/eval/cases.py); writes DIR/results.json,
DIR/results.md and PNG plots (realcam_jax/eval/report.py) atomically. Library entry
point: `realcam_jax.eval.runner.run_eval`. Metric definitions: docs/metrics.md.
`--results FILE` also writes a benchmark record for docs/benchmarks.md
(realcam_jax/bench/record.py).
"""

from __future__ import annotations

import json
import os
import sys

from realcam_jax.cli import UserError

HELP = ("evaluate student / teacher / prefix / copy-source / warp-source on held-out synthetic "
        "scenes")
DEFAULT_CONFIG = "student:demo"
DEFAULT_SYSTEMS = "student,teacher,prefix,copy_source,warp_source"
DEFAULT_LENGTHS = "shorter,short,long"
DEFAULT_CASES = "identity,presets,clip,loop"
REFERENCES = ("vae_roundtrip", "blur_2px", "blur_4px", "blur_8px", "row_mean")


def add_arguments(parser):
  parser.add_argument("--config", default=DEFAULT_CONFIG,
                      help=f"student config FILE[:ARG] (teacher configs work without the "
                           f"student system; default {DEFAULT_CONFIG}, tiny for tests)")
  parser.add_argument("--split", default="test",
                      help="dataset split whose clips are the scenes (default test: held out)")
  parser.add_argument("--systems", default=DEFAULT_SYSTEMS, metavar="S1,S2",
                      help=f"systems to compare (default {DEFAULT_SYSTEMS})")
  for name, what in (("student", "student training workdir or exported dir"),
                     ("teacher", "teacher training workdir or converted dir"),
                     ("prefix", "prefix-layout teacher (configs/teacher.py:SIZE,prefix) workdir"),
                     ("vae", "VAE checkpoint directory")):
    parser.add_argument(f"--{name}", metavar="CKPT",
                        help=f"{what}; default: random weights (numbers are meaningless)")
  parser.add_argument("--num-scenes", type=int, default=16, metavar="N",
                      help="clips of the split to evaluate (default 16; 32 for the "
                           "committed tables)")
  parser.add_argument("--cases", default=DEFAULT_CASES, metavar="C1,C2",
                      help="target paths: identity (the target follows the source camera; "
                           "truth = source), presets (ReCamMaster's ten, from the source "
                           "pose; or name single ones, e.g. pan_right), clip (the clip's "
                           f"target camera), loop (true loops); default {DEFAULT_CASES}")
  parser.add_argument("--lengths", default=DEFAULT_LENGTHS, metavar="L1,L2",
                      help="shorter (~0.6x the training length), short (1x), long (~2.2x), "
                           "all at one per-frame camera speed; default "
                           f"{DEFAULT_LENGTHS} (`loop` is accepted for old commands and "
                           "adds the loop case)")
  parser.add_argument("--references", default=",".join(REFERENCES), metavar="R1,R2",
                      help="rows built from the truth: " + ", ".join(REFERENCES)
                           + " (default all; 'none' for no reference row)")
  parser.add_argument("--bootstrap-samples", type=int, default=2000, metavar="N",
                      help="bootstrap resamples of the scenes per 95%% interval (default 2000)")
  parser.add_argument("--adherence", action="store_true",
                      help="also measure camera adherence (RotErr/TransErr; slow)")
  parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
  parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
  parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
  parser.add_argument("--results", metavar="FILE",
                      help="also write a benchmark record here (docs/results/NAME.json)")


def _names(text: str, valid: tuple, flag: str) -> list[str]:
  names = [n.strip() for n in str(text).split(",") if n.strip()]
  bad = [n for n in names if n not in valid]
  if bad:
    raise UserError(f"{flag}: unknown {', '.join(repr(b) for b in bad)}; expected a "
                    f"comma-separated subset of {', '.join(valid)}")
  if not names:
    raise UserError(f"{flag} is empty; expected a comma-separated subset of {', '.join(valid)}")
  return list(dict.fromkeys(names))


def check_args(args) -> tuple[list[str], list[str], dict]:
  """(systems, lengths, checkpoints) from the arguments; UserError before any work.

  Also sets `args.case_names` (expanded cases) and `args.reference_names`."""
  from realcam_jax.eval import cases as cases_lib, report, runner, systems as systems_lib
  if args.split not in runner.SPLITS:
    raise UserError(f"--split {args.split!r}: expected one of {', '.join(runner.SPLITS)}")
  names = _names(args.systems, systems_lib.SYSTEMS, "--systems")
  lengths = _names(args.lengths, runner.LENGTHS + ("loop",), "--lengths")
  case_names = _names(args.cases, cases_lib.CASE_GROUPS + cases_lib.CASE_NAMES, "--cases")
  if "loop" in lengths:                      # the old spelling: loop was a length
    lengths.remove("loop")
    case_names = list(dict.fromkeys(case_names + ["loop"]))
    if not lengths:
      lengths = ["short"]
  args.case_names = cases_lib.expand_cases(case_names)
  args.reference_names = ([] if args.references.strip() == "none"
                          else _names(args.references, REFERENCES, "--references"))
  if args.num_scenes < 1:
    raise UserError(f"--num-scenes {args.num_scenes}: expected >= 1")
  if args.bootstrap_samples < 1:
    raise UserError(f"--bootstrap-samples {args.bootstrap_samples}: expected >= 1")
  checkpoints = {}
  for flag in ("student", "teacher", "prefix", "vae"):
    path = getattr(args, flag)
    if path is None:
      continue
    if not os.path.isdir(path):
      raise UserError(f"--{flag} {path}: checkpoint directory does not exist")
    if flag != "vae" and flag not in names:
      print(f"note: --{flag} is ignored: {flag} is not in --systems", file=sys.stderr)
    checkpoints[flag] = path
  try:
    report.check_out_dir(os.path.abspath(args.out), args.overwrite)
  except report.ReportError as e:
    raise UserError(str(e)) from None
  return names, lengths, checkpoints


def copy_record_figures(results: dict, report_dir: str, record_path: str,
                        keys=()) -> list[dict]:
  """The report's frame sheets copied beside a results record (NAME_frames_<C>_<L>.png next
  to NAME.json, each written atomically); [{title, file}] with file names relative to
  the record. `keys`: the kept videos' "case/length" keys."""
  from realcam_jax.atomic import atomic_file
  from realcam_jax.bench import record
  from realcam_jax.eval.report import frames_file
  folder, name = os.path.dirname(os.path.abspath(record_path)), record.name_of(record_path)
  figures = []
  for key in keys:
    src = os.path.join(report_dir, frames_file(key))
    if not os.path.exists(src):
      continue
    with open(src, "rb") as f:
      data = f.read()
    file = f"{name}_{frames_file(key)}"
    atomic_file(os.path.join(folder, file), lambda f, data=data: f.write(data))
    columns = " | ".join(["source", *results["systems"], "truth"])
    figures.append(dict(title=f"{key} video, scene {results['seeds'][0]}: {columns}",
                        file=file))
  return figures


def run(args, overrides) -> int:
  from realcam_jax.config import get_config
  from realcam_jax.eval import report, runner, systems as systems_lib
  from realcam_jax.inference.load import LoadError, load_vae_model

  names, lengths, checkpoints = check_args(args)
  config = get_config(args.config, overrides)
  if "student" in names and "student" not in config:
    raise UserError(f"--systems has student but --config {args.config} is not a student config "
                    "(configs/student.py:SIZE); drop student or pass a student config")
  try:
    systems_lib.teacher_config(config)
  except ValueError as e:
    raise UserError(f"--config {args.config}: {e}") from None
  try:
    vae = load_vae_model(checkpoints.get("vae"), config)
    systems = systems_lib.load_systems(config, names, checkpoints, vae, seed=args.seed)
    settings = runner.scene_settings(config, vae)
  except (LoadError, ValueError) as e:
    raise UserError(str(e)) from None
  try:
    lat = runner.latent_lengths(settings, tuple(lengths))
  except ValueError as e:
    raise UserError(f"--lengths: {e}") from None
  refs = runner.default_references()
  if "vae_roundtrip" in args.reference_names:
    refs["vae_roundtrip"] = systems_lib.vae_roundtrip(vae)
  refs = {n: refs[n] for n in args.reference_names}
  print(f"eval: {', '.join(names + list(refs))} on {args.num_scenes} {args.split} scene(s), "
        f"{len(args.case_names)} case(s), {settings.width}x{settings.height} px, lengths "
        + ", ".join(f"{n}={runner.pixel_frames(f, settings.temporal_factor)} frames"
                    for n, f in lat.items()), file=sys.stderr)
  videos = {}
  partial = os.path.abspath(args.out).rstrip(os.sep) + ".partial.json"

  def save_partial(res):
    """After each scene: the scenes so far, beside DIR (a long run can be read early)."""
    from realcam_jax.atomic import atomic_file
    text = json.dumps(report.to_jsonable(dict(res, partial=True)), indent=1)
    atomic_file(partial, lambda f: f.write(text.encode()))

  results = runner.run_eval(systems, settings, split=args.split, num_scenes=args.num_scenes,
                            cases=args.case_names, lengths=lengths, references=refs,
                            seed=args.seed, adherence=args.adherence, keep_videos=videos,
                            bootstrap_samples=args.bootstrap_samples,
                            after_scene=save_partial)
  results["command"] = getattr(args, "command_line", None)
  results["config"] = args.config
  results["config_overrides"] = list(overrides)
  try:
    files = report.write_report(results, args.out, overwrite=args.overwrite, videos=videos)
  except report.ReportError as e:
    raise UserError(str(e)) from None
  sys.stdout.write(report.markdown(results))
  print(f"wrote {args.out}: {', '.join(files)}")
  if os.path.exists(partial):
    os.remove(partial)
  if args.results:
    from realcam_jax.bench import convert, record
    rec = convert.from_eval(results, record.name_of(args.results))
    rec["figures"] = copy_record_figures(results, args.out, args.results, list(videos))
    print(f"wrote {record.write_record(args.results, rec)}")
  return 0
