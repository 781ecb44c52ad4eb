"""`realcam bench` on the tiny config with small lengths; bad arguments exit 2."""

import json
import math

import numpy as np
import pytest

from realcam_jax.bench import stream
from realcam_jax.cli import main

TINY = ["--config", "student:tiny", "--size", "16x16"]


def _finite_positive(x):
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
  from realcam_jax.inference.session import enable_compilation_cache
  enable_compilation_cache()                 # repeated test runs load instead of compiling
  out = tmp_path_factory.mktemp("bench") / "out"
  rc = main(["bench", *TINY, "--lengths", "1,2", "--offline-lengths", "1",
             "--systems", "student,student_window,prefix", "--out", str(out),
             "--results", str(out.parent / "stream_tiny.json")])
  return rc, out


def test_bench_writes_json_md_png(bench_run):
  rc, out = bench_run
  assert rc == 0
  results = json.loads((out / "bench.json").read_text())
  assert set(results["systems"]) == {"student", "student_window", "prefix"}
  assert results["machine"]["cpu_count"] >= 1 and results["machine"]["backend"] == "cpu"
  for name in ("student", "student_window"):
    s = results["systems"][name]
    assert [r["multiple"] for r in s["lengths"]] == [1, 2]
    for r in s["lengths"]:
      assert r["chunks"] == r["multiple"] * s["chunks_per_training_length"]
      assert len(r["chunk_latency_s"]) == r["chunks"]
      assert r["frames"] == s["chunk_frames"][0] + (r["chunks"] - 1) * s["chunk_frames"][1]
      for key in ("first_chunk_latency_s", "median_chunk_latency_s", "steady_fps",
                  "cpu_s_per_frame", "rss_mb", "peak_rss_mb", "kv_cache_mb"):
        assert _finite_positive(r[key]), (name, key, r[key])
      assert all(_finite_positive(x) for x in r["chunk_latency_s"])
      # Drift beside latency: one entry per chunk, None exactly at first occurrences.
      assert r["loop_chunks"] == s["chunks_per_training_length"]
      assert [d is None for d in r["chunk_drift"]] == [
          stream.first_occurrence(c, r["loop_chunks"]) is None for c in range(r["chunks"])]
      if r["multiple"] > 1:
        assert r["drift_max"] is not None and math.isfinite(r["drift_max"])
      assert len(r["position_drift"]) == r["chunks"]
  unlimited, window = (results["systems"][n]["lengths"] for n in ("student", "student_window"))
  assert unlimited[1]["kv_cache_mb"] == pytest.approx(2 * unlimited[0]["kv_cache_mb"])
  assert window[1]["kv_cache_mb"] == window[0]["kv_cache_mb"]     # constant: rolling window
  assert unlimited[1]["compile_s"] is not None and window[1]["compile_s"] is None
  prefix = results["systems"]["prefix"]
  assert prefix["layout"] == "prefix" and prefix["steps"] >= 1
  row = prefix["lengths"][0]
  assert _finite_positive(row["video_s"]) and _finite_positive(row["compile_s"])
  assert _finite_positive(row["estimate"]["step_s"])
  assert _finite_positive(results["speedup"]["ratio"])
  assert set(results["targets"]) == {"student", "student_window"}
  md = (out / "bench.md").read_text()
  assert results["command"] in md and "| student_window |" in md and "## Targets" in md
  assert "output drift along the stream" in md
  assert (out / "latency_vs_length.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # The cost model of the streamed student (rolling window), per option, in the report.
  rows = {r["label"]: r for r in results["cost_model"]["rows"]}
  # 16x16 px -> 2x2 latents -> 1 token per frame (patch 2): T = 2K = 6 tokens per chunk;
  # a query sees its own chunk + window 2 + sink 1.
  assert rows["as configured"]["keys_per_query"] == (1 + 2 + 1) * 6
  assert rows["3 steps"]["dit"]["flops"] == pytest.approx(      # 4 passes instead of 5
      0.8 * rows["as configured"]["dit"]["flops"], rel=1e-12)
  assert "## Cost model: per generated frame, predicted on H100" in md
  assert "| source_once |" in md


def test_loop_drift_compares_each_chunk_with_its_first_occurrence():
  # A loop of 3 chunks; chunk 0 is shorter, so position 0 first occurs at chunk 3.
  assert [stream.first_occurrence(c, 3) for c in range(8)] == [None, None, None, None, 1, 2,
                                                               3, 1]
  x = [np.full((2, 2), v) for v in (9.0, 1.0, 2.0, 4.0, 1.0, 2.5, 4.0, 1.1)]
  drift = stream.loop_drift(x, 3)
  assert drift[:4] == [None] * 4
  np.testing.assert_allclose(drift[4:], [0.0, 0.25, 0.0, 0.1])
  summary = stream.drift_summary(drift, 3)
  assert summary["drift_per_loop"][0] is None and summary["drift_max"] == pytest.approx(0.25)
  np.testing.assert_allclose(summary["drift_per_loop"][1:], [0.125, 0.05])
  assert summary["drift_last"] == pytest.approx(0.1)


def test_position_drift_of_a_windowed_stream_is_zero():
  """8 chunks through 1 sink + a window of 2, 2 chunks per loop: chunks 6 and 7 are replayed
  from their own caches at stream indices 4 and 5 and give the same latents."""
  from realcam_jax.camera import intrinsics as intr
  from realcam_jax.config import get_config
  from realcam_jax.inference.session import StreamingSession
  from realcam_jax.models import vae as vae_lib
  from realcam_jax.testing import random_dit
  assert [stream.position_probe_index(c, 2, 1, 2) for c in range(9)] == [None] * 6 + [4, 5, 4]
  config = get_config("student:tiny,window")
  graphdef, params = random_dit(config.model, scale=0.2)
  vae = vae_lib.create_vae(get_config("vae:tiny").model, seed=0)
  session = StreamingSession(config, graphdef, params, vae, height=16, width=16,
                             intrinsics=np.asarray(intr.intrinsics_from_fov(60.0, 16, 16)),
                             noise_period=2)
  loop, _ = stream.loop_clip(config, vae, 16, 16)
  row = stream.run_stream(session, 8, loop)
  probed = row["position_drift"]
  assert probed[:6] == [None] * 6 and row["position_drift_max"] < 1e-5, probed
  assert row["drift_max"] > 1e-3       # the loop drift also sees the generated history


def test_bench_writes_a_benchmark_record(bench_run):
  from realcam_jax.bench import record
  rc, out = bench_run
  rec = record.read_record(str(out.parent / "stream_tiny.json"))
  results = json.loads((out / "bench.json").read_text())
  assert rc == 0 and rec["name"] == "stream_tiny" and rec["command"] == results["command"]
  assert "--results" in rec["command"] and rec["date"] == results["date"]
  assert "#### Targets" in rec["table"] and "| student_window |" in rec["table"]
  assert rec["numbers"]["systems"].keys() == results["systems"].keys()


def test_dry_run_plans_without_compiling(capsys):
  assert main(["bench", *TINY, "--systems", "student,teacher", "--lengths", "1,2",
               "--dry-run"]) == 0
  cap = capsys.readouterr()
  plan = json.loads(cap.out.strip().splitlines()[-1])
  assert plan["system"] == "student" and plan["size"] == [16, 16]
  assert plan["shapes"]["steady"]["generated"][1] == plan["chunk_frames"][1]
  assert "teacher: skipped by --dry-run" in cap.err
  assert "Cost model: per generated frame" in cap.err and "| 3 steps |" in cap.err


def test_offline_guard_skips_with_an_extrapolated_estimate(bench_run, tmp_path):
  out = tmp_path / "guard"
  assert main(["bench", *TINY, "--systems", "prefix", "--offline-lengths", "1",
               "--max-seconds", "1e-9", "--out", str(out)]) == 0
  row = json.loads((out / "bench.json").read_text())["systems"]["prefix"]["lengths"][0]
  assert "video_s" not in row and row["skipped"].startswith("skipped: would take ~")
  assert "extrapolated" in row["skipped"] and _finite_positive(row["estimate"]["estimate_s"])
  assert "extrapolated, skipped" in (out / "bench.md").read_text()


def test_teacher_sampler_overrides_reach_the_offline_systems():
  import argparse

  from realcam_jax.cli import bench as bench_cli
  from realcam_jax.config import get_config
  student = get_config("student:tiny", ["--config.teacher.sampler.cfg_scale=7.5",
                                        "--config.teacher.sampler.steps=3"])
  args = argparse.Namespace(teacher_config=None, systems_list=["teacher", "prefix"])
  name, configs = bench_cli.teacher_configs(args, student)
  assert name == "teacher:tiny"
  for system in ("teacher", "prefix"):
    assert configs[system].sampler.cfg_scale == 7.5 and configs[system].sampler.steps == 3
  assert configs["prefix"].model.layout == "prefix"
  # --config.model.* overrides (dtype, attention) reach them too: the same architecture.
  _, bf16 = bench_cli.teacher_configs(args, student, ["--config.model.dtype=bfloat16",
                                                      "--config.student.chunk_pairs=1"])
  assert bf16["teacher"].model.dtype == bf16["prefix"].model.dtype == "bfloat16"
  assert bf16["prefix"].model.layout == "prefix"
  # An explicit --teacher-config keeps its own sampler.
  args.teacher_config = "teacher:tiny"
  _, own = bench_cli.teacher_configs(args, student)
  assert own["teacher"].sampler.cfg_scale == get_config("teacher:tiny").sampler.cfg_scale != 7.5


def test_offline_vae_in_chunks_times_the_streaming_vae(tmp_path):
  out = tmp_path / "chunks"
  assert main(["bench", *TINY, "--systems", "prefix", "--offline-lengths", "1",
               "--max-seconds", "1e-9", "--offline-vae", "chunks", "--out", str(out)]) == 0
  est = json.loads((out / "bench.json").read_text())["systems"]["prefix"]["lengths"][0][
      "estimate"]
  assert est["vae_mode"] == "chunks" and _finite_positive(est["vae_s"])
  assert est["estimate_s"] == pytest.approx(est["steps"] * est["step_s"] + est["vae_s"])


@pytest.mark.parametrize("extra,expect", [
    (["--lengths", "0,1"], "--lengths"),
    (["--lengths", "one"], "--lengths"),
    (["--offline-lengths", ""], "--offline-lengths"),
    (["--systems", "student,warp"], "unknown 'warp'"),
    (["--max-seconds", "0"], "--max-seconds"),
    (["--teacher-config", "teacher:demo"], "latent channels"),
])
def test_bad_arguments_exit_2_without_output(tmp_path, capsys, extra, expect):
  out = tmp_path / "out"
  assert main(["bench", *TINY, "--out", str(out), *extra]) == 2
  assert expect in capsys.readouterr().err
  assert not out.exists()
