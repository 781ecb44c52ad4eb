"""`launch/train_demo.py`: stage order, skipping finished stages, interrupted training."""

import importlib.util
import json
import os
import pathlib
import sys

_PATH = pathlib.Path(__file__).resolve().parents[2] / "launch" / "train_demo.py"
_spec = importlib.util.spec_from_file_location("realcam_launch_train_demo", _PATH)
pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pipeline)


def test_dry_run_lists_every_stage_and_skips_finished_ones(tmp_path, capsys):
  ck = tmp_path / "ck"
  (ck / "vae_demo").mkdir(parents=True)
  results = tmp_path / "results"   # not docs/results: the repository's records exist there
  rc = pipeline.main(["--runs", str(tmp_path / "runs"), "--checkpoints", str(ck), "--dry-run",
                      "--results-dir", str(results)])
  assert rc == 0
  out = capsys.readouterr().out
  assert f"[vae] done ({ck / 'vae_demo'} exists)" in out
  order = [line.split("]")[0][1:] for line in out.splitlines() if "]" in line and ":" in line
           and "done" not in line]
  assert order == ["data", "latents", "teacher", "teacher", "student", "student", "prefix",
                   "prefix", "eval", "eval", "chunk1", "chunk1", "no_loopaug", "no_loopaug",
                   "eval_ablations", "eval_ablations", "eval_ablations"]
  assert "configs/teacher.py:demo,prefix" in out
  assert f"--config.student.teacher_ckpt={ck / 'teacher_demo'}" in out
  # chunk1 reuses the student's ODE pairs (same settings); no_loopaug cannot (other data).
  pairs = f"--config.student.ode_pairs_dir={tmp_path / 'runs' / 'student_demo' / 'ode_pairs'}"
  lines = {line.split("]")[0][1:] + line.split("]")[1].split(":")[0]: line
           for line in out.splitlines() if line.startswith("[")}
  assert pairs in lines["chunk1 train"] and pairs not in lines["no_loopaug train"]
  # Every eval record is one docs/benchmarks.md expects (same command and output names).
  from realcam_jax.bench import benchdoc
  entries = {e.name: e.command for sec in benchdoc.SECTIONS for e in sec.entries}
  for stage_label, name in [("eval_ablations eval-chunk1", "eval_demo_chunk1"),
                            ("eval_ablations eval-no-loopaug", "eval_demo_no_loopaug"),
                            ("eval eval", "eval_demo")]:
    assert f"--results {results / name}.json" in lines[stage_label]
    assert f"--results docs/results/{name}.json" in entries[name]   # the default folder
  assert f"--results-dir {results} --out {results / 'benchmarks.md'}" in lines["eval doc"]
  assert not (tmp_path / "runs" / "pipeline.jsonl").exists()     # dry run: nothing logged


def test_interrupted_training_stops_the_pipeline_and_is_logged(tmp_path, monkeypatch, capsys):
  runs = str(tmp_path)
  say = lambda text: [sys.executable, "-c", f"print({text!r})"]  # noqa: E731
  steps = [("train", say("realcam-train: stopped by signal at step 5")),
           ("export", say("exported"))]
  assert pipeline.run_stage("teacher", steps, runs, dry_run=False) == 0
  out = capsys.readouterr().out
  assert "rerun this command to resume" in out and "exported" not in out
  steps[0] = ("train", say("realcam-train: finished at step 9"))
  assert pipeline.run_stage("teacher", steps, runs, dry_run=False) == 0
  assert "exported" in capsys.readouterr().out
  rows = [json.loads(x) for x in open(tmp_path / "pipeline.jsonl")]
  assert [(r["stage"], r["step"], r["rc"]) for r in rows] == [
      ("teacher", "train", 0), ("teacher", "train", 0), ("teacher", "export", 0)]
  assert set(pipeline.report(runs)) == {"teacher"} and pipeline.report(runs)["teacher"] > 0
  # A failing command stops the stage with its exit code.
  fail = [("train", [sys.executable, "-c", "raise SystemExit(4)"])]
  assert pipeline.run_stage("prefix", fail, runs, dry_run=False) == 4


def test_provenance_records_the_stage_commands_next_to_the_weights(tmp_path, capsys):
  runs, ck = tmp_path / "runs", tmp_path / "ck"
  say = lambda text: [sys.executable, "-c", f"print({text!r})"]  # noqa: E731
  steps = [("train", say("realcam-train: finished at step 9")), ("export", say("exported"))]
  assert pipeline.run_stage("teacher", steps, str(runs), dry_run=False) == 0
  assert pipeline.run_stage("prefix", steps[:1], str(runs), dry_run=False) == 0
  (ck / "teacher_demo").mkdir(parents=True)
  (ck / "vae_demo").mkdir()                            # bundled, but no logged commands
  capsys.readouterr()
  assert pipeline.main(["--runs", str(runs), "--checkpoints", str(ck), "--provenance"]) == 0
  out = capsys.readouterr().out
  assert "[vae] no logged commands" in out and not (ck / "vae_demo" / "provenance.json").exists()
  doc = json.loads((ck / "teacher_demo" / "provenance.json").read_text())
  rows = [json.loads(x) for x in open(runs / "pipeline.jsonl") if '"teacher"' in x]
  assert [c["step"] for c in doc["commands"]] == ["train", "export"]
  assert [c["command"] for c in doc["commands"]] == [r["command"] for r in rows]
  assert abs(doc["wall_seconds"] - sum(r["seconds"] for r in rows)) < 0.2
  assert doc["stage"] == "teacher" and doc["machine"]["cpus"] == os.cpu_count()
  assert "[prefix]" not in out                         # not exported yet: nothing written
