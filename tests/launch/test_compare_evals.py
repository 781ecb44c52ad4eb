"""launch/compare_evals.py: paired per-scene differences between two eval runs."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "launch" / "compare_evals.py"
_spec = importlib.util.spec_from_file_location("compare_evals", _PATH)
compare_evals = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_evals)


def _run(psnr, seeds=None):
  seeds = seeds or list(range(len(psnr)))
  scenes = [dict(seed=s, psnr=p, psnr_object=p - 2.0) for s, p in zip(seeds, psnr)]
  cell = dict(psnr=float(np.mean(psnr)), psnr_object=float(np.mean(psnr)) - 2.0, scenes=scenes)
  return {"results": {"student": {"identity": {"short": cell}}}}


def test_difference_is_the_paired_mean_and_separates_only_when_it_should():
  base = [20.0, 22.0, 18.0, 25.0, 21.0, 19.0]
  shifted = [b + 1.0 + 0.01 * i for i, b in enumerate(base)]      # better on every scene
  noisy = [b + (3.0 if i % 2 else -3.0) for i, b in enumerate(base)]  # mean 0, no separation
  rows = compare_evals.compare([("base", _run(base)), ("up", _run(shifted)),
                                ("noisy", _run(noisy))], "student", ["psnr"], samples=500)
  up, nz = rows
  np.testing.assert_allclose(up["diff"], np.mean(np.subtract(shifted, base)))
  assert up["lo"] > 0.99 and up["hi"] < 1.06
  np.testing.assert_allclose(nz["diff"], 0.0, atol=1e-12)
  assert nz["lo"] < 0 < nz["hi"]
  text = compare_evals.markdown(rows, "base")
  assert f"{up['diff']:+.2f} [" in text and text.count(" * |") == 1


def test_refuses_runs_over_different_scenes(tmp_path):
  a, b = tmp_path / "a.json", tmp_path / "b.json"
  a.write_text(json.dumps(_run([20.0, 21.0])))
  b.write_text(json.dumps(_run([20.0, 21.0], seeds=[0, 7])))
  with pytest.raises(SystemExit, match="different scenes"):
    compare_evals.main([str(a), str(b)])
  with pytest.raises(SystemExit):
    compare_evals.main([str(a), str(a), "--system", "teacher"])


def test_cli_writes_the_table(tmp_path, capsys):
  a, b = tmp_path / "a.json", tmp_path / "b.json"
  a.write_text(json.dumps(_run([20.0, 21.0, 22.0])))
  b.write_text(json.dumps(_run([19.0, 20.0, 21.0])))
  out = tmp_path / "t.md"
  compare_evals.main([str(a), str(b), "--out", str(out), "--metrics", "psnr_object"])
  assert "-1.00 [-1.00, -1.00] *" in out.read_text()
  assert out.read_text() == capsys.readouterr().out
