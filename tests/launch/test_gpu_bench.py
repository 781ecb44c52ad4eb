"""`launch/gpu_bench.sh --tiny`: every step of the GPU script runs on this CPU at tiny size
and writes its records (the device call then only has to run the same steps at full size)."""

import os
import pathlib
import subprocess
import sys

from realcam_jax.bench import record

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "launch" / "gpu_bench.sh")


def _run(*args, timeout=900):
  env = dict(os.environ, PYTHON=sys.executable, GPU_BENCH_BUDGET="900")
  env.pop("OUT", None)
  return subprocess.run(["nice", "-n", "15", "bash", SCRIPT, *args], capture_output=True,
                        text=True, timeout=timeout, env=env, cwd=ROOT)


def test_tiny_run_writes_the_options_and_baseline_records(tmp_path):
  out = tmp_path / "r"
  r = _run("--tiny", str(out))
  assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
  opts = record.read_record(str(out / "gpu_stream_options.json"))
  n = opts["numbers"]
  assert set(n["systems"]) == {"student_window", "teacher", "prefix"}
  assert "--config.student.timesteps=(1000.0,666.667,333.333)" in opts["command"]
  for system in ("teacher", "prefix"):       # extrapolated from a measured step + VAE
    row = n["systems"][system]["lengths"][0]
    assert "skipped" in row and row["estimate"]["vae_mode"] == "chunks"
  assert n["speedup"]["prefix_extrapolated"] and n["speedup"]["ratio"] > 0
  assert n["systems"]["student_window"]["lengths"][0]["steady_fps"] > 0
  assert "Cost model" in opts["table"] and "#### Speed-up" in opts["table"]
  base = record.read_record(str(out / "gpu_stream.json"))
  assert set(base["numbers"]["systems"]) == {"student_window"}
  assert "timesteps" not in base["command"]
  log = (out / "gpu_bench.log").read_text()
  assert "0 step(s) failed" in log


def test_bad_parts_exit_2(tmp_path):
  r = _run("--parts", "options,warp", str(tmp_path / "r"), timeout=60)
  assert r.returncode == 2 and "unknown part warp" in r.stderr
  r = _run("--tiny", "--parts", "dit", str(tmp_path / "r"), timeout=60)
  assert r.returncode == 2 and "--tiny runs options,stream only" in r.stderr
  assert not (tmp_path / "r").exists()
