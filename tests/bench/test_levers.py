"""The speed-lever bench (realcam_jax/bench/levers.py, launch/bench_levers.py): what it
predicts for each lever, how its table reads the measurements, and a tiny run."""

import importlib.util
import pathlib

import pytest

from realcam_jax.bench import cost, levers, record
from realcam_jax.config import get_config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _predicted():
  c = get_config("student:demo")
  return levers.predicted(c, get_config("vae:demo").model, 64, 64, cost.config_dtypes(c))


def test_each_lever_changes_what_the_cost_model_says_it_changes():
  p = _predicted()
  base = p["base"]
  # 3 steps + the commit = 4 identical passes instead of 5.
  assert p["steps3"]["dit"]["flops"] == pytest.approx(0.8 * base["dit"]["flops"], rel=1e-12)
  assert p["window_1_1"]["keys_per_query"] == 96 + 2 * 96 < base["keys_per_query"] == 96 + 288
  assert p["window_4_1"]["keys_per_query"] == 96 + 5 * 96
  assert p["kv_bf16"]["flops"] == base["flops"]
  assert p["kv_bf16"]["dit"]["kv_read"] == base["dit"]["kv_read"] / 2
  assert p["donate"]["flops"] == base["flops"] and p["donate"]["bytes"] == base["bytes"]
  assert p["combined"]["flops"] == p["steps3"]["flops"]
  assert p["parts"]["vae_encode"]["flops"] + p["parts"]["vae_decode"]["flops"] > \
      2 * p["parts"]["dit:base"]["flops"]                  # demo: the VAE dominates


def test_table_compares_like_with_like():
  p = _predicted()
  med = {"base": 1.0, "donate": 0.9, "combined": 0.8, "vae_encode": 0.3, "vae_decode": 0.5,
         "dit:base": 0.25, "dit:steps3": 0.2, "dit:window_1_1": 0.22, "dit:window_4_1": 0.3,
         "dit:kv_bf16": 0.24}
  numbers = {"measured": {k: {"median_s": v, "min_s": v} for k, v in med.items()},
             "predicted": p, "levers": [dict(vars(lv)) for lv in levers.LEVERS],
             "frames_per_chunk": 12, "size": [64, 64], "dtypes": {"act": "float32"},
             "rounds": 1, "chunks_per_round": 1}
  text = levers.table(numbers)
  assert levers.chunk_seconds(numbers, numbers["levers"][1]) == (pytest.approx(1.0), "parts")
  # 3 steps: its chunk = 0.3 + 0.2 + 0.5 = 1.0 s against the base's parts 1.05 s.
  assert "| 3 steps |" in text and "| 1.000 (parts) | 12.0 | 1.05x |" in text
  assert "| caches donated across chunks |" in text and "| 0.900 (whole) | 13.3 | 1.11x |" in text
  assert "| sum of the parts | 1.050 | 100% |" in text


def test_bench_levers_tiny_writes_a_record(tmp_path):
  spec = importlib.util.spec_from_file_location("bench_levers", ROOT / "launch" /
                                                "bench_levers.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  out = tmp_path / "levers_tiny.json"
  assert mod.main(["--tiny", "--results", str(out)]) == 0
  rec = record.read_record(str(out))
  m = rec["numbers"]["measured"]
  assert {lv.name for lv in levers.LEVERS if lv.whole} <= set(m)
  assert all(f"dit:{lv.name}" in m for lv in levers.LEVERS if not lv.donate)
  assert all(v["median_s"] > 0 for v in m.values())
  assert "| 3 steps + KV bf16 + donated |" in rec["table"]
  assert "The same levers at full size" in rec["table"] and "| source_once |" in rec["table"]
