"""Reproduce the bundled demo models from nothing, resumably, with wall times.

    python launch/train_demo.py                  # every stage not done yet, in order
    python launch/train_demo.py --until teacher  # stop after a stage
    python launch/train_demo.py --dry-run        # print the commands only

Stages (each a plain command you can also run by hand; see `--dry-run`):

  data     realcam data build          synthetic demo dataset (runs/data)
  vae      launch/train_vae.py         demo VAE, exported to checkpoints/vae_demo
  latents  realcam data encode         latent dataset (runs/latents)
  teacher  launch/train.py + export    interleaved teacher -> checkpoints/teacher_demo
  student  launch/train.py + export    ODE init + DMD from the teacher -> checkpoints/student_demo
  prefix   launch/train.py + export    prefix-layout baseline -> checkpoints/prefix_demo
  eval     realcam eval                the main table of docs/benchmarks.md (student, teacher,
                                       prefix, copy-source; docs/results/eval_demo.json)
  chunk1   launch/train.py + export    student ablation, chunks of 1 frame pair (runs/chunk1_demo;
                                       reuses the student's ODE pairs, same schedule)
  no_loopaug  (the same)               student ablation without LoopAug (runs/no_loopaug_demo;
                                       its own ODE pairs: LoopAug changes the data)
  eval_ablations  realcam eval         the ablation tables (docs/results/eval_demo_{chunk1,
                                       no_loopaug}.json)

The demo takes hours of CPU time: kill it (or let a session end) at any point and run
the same command again: training resumes from its last Orbax checkpoint, finished
stages are skipped (a stage is finished when its output exists: the exported
checkpoint, the dataset). Every command run is appended to RUNS/pipeline.jsonl with
its start, end, seconds and exit code, so the wall time of each model is the sum of
its stage's rows (`--report` prints them). When a stage that exports a bundled model
(vae, teacher, student, prefix) finishes, its rows are also written next to the weights
as `checkpoints/NAME_demo/provenance.json` (the commands, their wall times and the
machine), so a shipped checkpoint carries how it was made; `--provenance` writes it for
stages finished earlier.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

FINISHED_MARK = "realcam-train: finished at step"   # printed by launch/train.py
PROVENANCE = "provenance.json"
BUNDLED = ("vae", "teacher", "student", "prefix")   # stages whose export is checkpoints/NAME_demo
STAGES = ("data", "vae", "latents", "teacher", "student", "prefix", "eval", "chunk1",
          "no_loopaug", "eval_ablations")
DEFAULT_RESULTS = os.path.join("docs", "results")   # the records docs/benchmarks.md shows
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _py(script: str) -> list[str]:
  return [sys.executable, os.path.join("launch", script)]


def _realcam() -> list[str]:
  return [sys.executable, "-m", "realcam_jax.cli"]


def plan(args) -> dict:
  """stage -> (done path, [(label, argv), ...])."""
  r, c = args.runs, args.checkpoints
  ck = {n: os.path.join(c, f"{n}_demo") for n in ("vae", "teacher", "prefix", "student")}
  latents = os.path.join(r, "latents")
  teach = lambda name, cfg, extra: [  # noqa: E731
      ("train", _py("train.py") + ["--config", cfg, "--workdir", os.path.join(r, f"{name}_demo"),
                                   f"--config.data.dataset_dir={latents}", *extra]),
      ("export", _py("export.py") + ["--config", cfg, "--workdir", os.path.join(r, f"{name}_demo"),
                                     "--out", ck[name], *extra])]
  vae = ["--config", "configs/vae.py:demo", "--workdir", os.path.join(r, "vae_demo")]
  from_teacher = f"--config.student.teacher_ckpt={ck['teacher']}"
  abl = {n: os.path.join(r, f"{n}_demo") for n in ("chunk1", "no_loopaug")}
  ablation = lambda name, extra: [  # noqa: E731  (exported inside its workdir, not bundled)
      ("train", _py("train.py") + ["--config", f"configs/student.py:demo,{name}", "--workdir",
                                   abl[name], f"--config.data.dataset_dir={latents}",
                                   from_teacher, *extra]),
      ("export", _py("export.py") + ["--config", f"configs/student.py:demo,{name}", "--workdir",
                                     abl[name], "--out", os.path.join(abl[name], "export"),
                                     from_teacher, *extra])]
  evaluate = lambda config, extra, out, record: (  # noqa: E731
      _realcam() + ["eval", "--config", config, "--vae", ck["vae"], *extra, "--out",
                    os.path.join(r, out), "--overwrite", "--results", record])
  results = args.results_dir
  doc = _py("make_benchmarks_doc.py")
  if os.path.normpath(results) != DEFAULT_RESULTS:   # elsewhere: its own document beside it
    doc += ["--results-dir", results, "--out", os.path.join(results, "benchmarks.md")]
  return {
      "data": (os.path.join(r, "data"), [
          ("build", _realcam() + ["data", "build", "--config", "configs/data.py:demo",
                                  "--out", os.path.join(r, "data")])]),
      # As it was run: 5-frame windows at a constant learning rate to step 2650 and a
      # cosine anneal to 3600. The export then showed every chunk after the first
      # reconstructing badly (their causal cache was never trained), so: 9-frame windows
      # (the config default since) at 2e-4 to 3850, then whole 33-frame clips (24 px
      # crops) with a cosine decay from 2e-4 to 4250.
      "vae": (ck["vae"], [
          ("train", _py("train_vae.py") + vae + ["--num_steps", "2650",
                                                 "--config.data.train_frames=5"]),
          ("train-anneal", _py("train_vae.py") + vae + [
              "--num_steps", "3600", "--config.data.train_frames=5",
              "--config.optim.schedule=cosine", "--config.optim.total_steps=3600"]),
          ("train-9-frames", _py("train_vae.py") + vae + [
              "--num_steps", "3850", "--config.optim.schedule=cosine", "--config.optim.lr=2e-4",
              "--config.optim.warmup_steps=3650", "--config.optim.total_steps=4200"]),
          ("train-33-frames", _py("train_vae.py") + vae + [
              "--num_steps", "4250", "--config.data.train_frames=33", "--config.data.crop=24",
              "--config.optim.schedule=cosine", "--config.optim.lr=2e-4",
              "--config.optim.warmup_steps=3900", "--config.optim.total_steps=4250"]),
          ("export", _py("train_vae.py") + vae + ["--num_steps", "0", "--export", ck["vae"]])]),
      "latents": (os.path.join(latents, "meta.json"), [
          ("encode", _realcam() + ["data", "encode", "--config", "configs/data.py:demo",
                                   "--data-dir", os.path.join(r, "data"), "--vae", ck["vae"],
                                   "--out", latents])]),
      "teacher": (ck["teacher"], teach("teacher", "configs/teacher.py:demo", [])),
      "student": (ck["student"], teach("student", "configs/student.py:demo", [from_teacher])),
      "prefix": (ck["prefix"], teach("prefix", "configs/teacher.py:demo,prefix", [])),
      "chunk1": (os.path.join(abl["chunk1"], "export"), ablation("chunk1", [
          "--config.student.ode_pairs_dir=" + os.path.join(r, "student_demo", "ode_pairs")])),
      "no_loopaug": (os.path.join(abl["no_loopaug"], "export"), ablation("no_loopaug", [])),
      # The main table (every system, every length) as soon as its models exist, then chunk
      # size and LoopAug on the lengths where they differ (the training length, the true loop).
      "eval": (os.path.join(results, "eval_demo.json"), [
          ("eval", evaluate("student:demo", [
              "--student", ck["student"], "--teacher", ck["teacher"], "--prefix", ck["prefix"]],
              "eval_demo", os.path.join(results, "eval_demo.json"))),
          ("doc", doc)]),
      "eval_ablations": (os.path.join(results, "eval_demo_no_loopaug.json"), [
          ("eval-chunk1", evaluate("student:demo,chunk1", [
              "--systems", "student", "--student", os.path.join(abl["chunk1"], "export"),
              "--cases", "clip,loop", "--lengths", "short"], "eval_chunk1", os.path.join(results,
                                                                       "eval_demo_chunk1.json"))),
          ("eval-no-loopaug", evaluate("student:demo,no_loopaug", [
              "--systems", "student", "--student", os.path.join(abl["no_loopaug"], "export"),
              "--cases", "clip,loop", "--lengths", "short"], "eval_no_loopaug",
              os.path.join(results, "eval_demo_no_loopaug.json"))),
          ("doc", doc)]),
  }


def _log(runs: str, row: dict):
  os.makedirs(runs, exist_ok=True)
  with open(os.path.join(runs, "pipeline.jsonl"), "a") as f:
    f.write(json.dumps(row) + "\n")


def report(runs: str) -> dict:
  """stage -> total seconds of its commands (all sessions)."""
  totals = {}
  for row in _rows(runs):
    totals[row["stage"]] = totals.get(row["stage"], 0.0) + row["seconds"]
  return totals


def _rows(runs: str) -> list[dict]:
  """Every pipeline.jsonl row, in the order the commands ran ([] before the first)."""
  path = os.path.join(runs, "pipeline.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f]


def stage_rows(runs: str, stage: str) -> list[dict]:
  """The pipeline.jsonl rows of one stage, in the order they ran."""
  return [row for row in _rows(runs) if row["stage"] == stage]


def write_provenance(runs: str, stage: str, out_dir: str) -> str | None:
  """Writes OUT_DIR/provenance.json from the stage's logged commands; its path, or None
  when the stage has no logged rows (trained before the log existed)."""
  rows = stage_rows(runs, stage)
  if not rows:
    return None
  from realcam_jax.atomic import atomic_file
  seconds = sum(r["seconds"] for r in rows)
  doc = dict(
      stage=stage, wall_seconds=round(seconds, 1), wall_hours=round(seconds / 3600, 2),
      first_start=rows[0]["start"], last_end=rows[-1]["end"],
      machine=dict(cpus=os.cpu_count(), platform=platform.platform(),
                   python=platform.python_version()),
      note=("Sum of the wall times of every command of the stage, over all sessions "
            "(training resumed from Orbax checkpoints after each interruption); other jobs "
            "shared the CPU at times. Reproduce: python launch/train_demo.py --only " + stage),
      commands=[dict(step=r["step"], command=r["command"], seconds=round(r["seconds"], 1),
                     start=r["start"], end=r["end"], rc=r["rc"]) for r in rows])
  path = os.path.join(out_dir, PROVENANCE)
  atomic_file(path, lambda f: f.write((json.dumps(doc, indent=1) + "\n").encode()))
  return path


def _call(argv) -> tuple[int, bool]:
  """Runs `argv` (stdout echoed, stderr passed through); (exit code, reported finished)."""
  finished = False
  with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
    for line in proc.stdout:
      sys.stdout.write(line)
      sys.stdout.flush()
      finished |= line.startswith(FINISHED_MARK)
  return proc.returncode, finished


def run_stage(stage: str, steps, runs: str, dry_run: bool) -> int:
  """Runs a stage's commands in order; stops (0) when its training was interrupted."""
  for label, argv in steps:
    print(f"[{stage}] {label}: {' '.join(argv)}", flush=True)
    if dry_run:
      continue
    start = time.time()
    rc, finished = _call(argv)
    end = time.time()
    _log(runs, dict(stage=stage, step=label, command=" ".join(argv), rc=rc, seconds=end - start,
                    start=datetime.datetime.fromtimestamp(start).isoformat(timespec="seconds"),
                    end=datetime.datetime.fromtimestamp(end).isoformat(timespec="seconds")))
    if rc != 0:
      print(f"[{stage}] {label} failed (exit {rc}); fix it and rerun this command", file=sys.stderr)
      return rc
    if label.startswith("train") and not finished:
      print(f"[{stage}] training stopped before its last step; rerun this command to resume")
      return 0
  return 0


def _abs(path: str) -> str:
  """A path of the plan (relative ones are relative to the repository root)."""
  return path if os.path.isabs(path) else os.path.join(ROOT, path)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--runs", default="runs", help="datasets and training workdirs")
  p.add_argument("--checkpoints", default="checkpoints", help="exported models")
  p.add_argument("--results-dir", "--results_dir", dest="results_dir", default=DEFAULT_RESULTS,
                 help="where the eval stages write their records (docs/benchmarks.md reads "
                      "docs/results; another folder gets its own benchmarks.md)")
  p.add_argument("--until", choices=STAGES, default=STAGES[-1])
  p.add_argument("--only", choices=STAGES, default=None, help="run just this stage")
  p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true")
  p.add_argument("--report", action="store_true", help="print wall time per stage and exit")
  p.add_argument("--provenance", action="store_true",
                 help="write provenance.json into every finished bundled checkpoint and exit")
  args = p.parse_args(argv)
  if args.report:
    for stage, s in report(args.runs).items():
      print(f"{stage:8s} {s / 3600:6.2f} h")
    return 0
  plans = plan(args)
  if args.provenance:
    for stage in BUNDLED:
      done = _abs(plans[stage][0])
      if os.path.isdir(done):
        path = write_provenance(_abs(args.runs), stage, done)
        print(f"[{stage}] " + (f"wrote {path}" if path else "no logged commands"))
    return 0
  stages = [args.only] if args.only else STAGES[:STAGES.index(args.until) + 1]
  for stage in stages:              # in STAGES order
    done, steps = plans[stage]
    if os.path.exists(_abs(done)):
      print(f"[{stage}] done ({done} exists)")
      continue
    rc = run_stage(stage, steps, args.runs, args.dry_run)
    if rc or (not args.dry_run and not os.path.exists(_abs(done))):
      return rc
    if not args.dry_run and stage in BUNDLED:
      write_provenance(_abs(args.runs), stage, _abs(done))
  return 0


if __name__ == "__main__":
  sys.exit(main())
