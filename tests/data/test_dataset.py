"""The TFDS builder and `realcam data build`: round trip without TensorFlow, interruptions."""

import argparse
import glob
import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from realcam_jax.cli import UserError
from realcam_jax.cli import data as data_cli
from realcam_jax.config import get_config, split_overrides
from realcam_jax.data import synthetic, tfds_builder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_cli(argv):
  """`realcam data ARGV` (as the dispatcher runs it: overrides split off first)."""
  argv, overrides = split_overrides(argv)
  parser = argparse.ArgumentParser()
  data_cli.add_arguments(parser)
  return data_cli.run(parser.parse_args(argv), overrides)


def test_tensorflow_is_not_installed():
  assert importlib.util.find_spec("tensorflow") is None
  with pytest.raises(ImportError):
    import tensorflow  # noqa: F401


def test_dataset_builds_and_reads_back(tiny_dataset):
  data_dir, config = tiny_dataset
  builder = tfds_builder.load_builder(data_dir, tfds_builder.config_from_data(config.data))
  seeds = {}
  for split, n in config.data.split_sizes.items():
    source = builder.as_data_source(split)
    assert len(source) == n
    seeds[split] = {int(source[i]["seed"]) for i in range(n)}
  assert not seeds["train"] & seeds["validation"] and not seeds["train"] & seeds["test"]
  assert not seeds["validation"] & seeds["test"]
  record = builder.as_data_source("validation")[0]
  d = config.data
  assert record["source_rgb"].shape == (d.num_frames, d.height, d.width, 3)
  assert record["source_rgb"].dtype == np.uint8
  assert record["target_rgb"].shape == (2, d.num_frames, d.height, d.width, 3)
  assert record["target_c2w"].shape == (2, d.num_frames, 4, 4)
  assert record["target_c2w"].dtype == np.float32
  # The stored clip is exactly what the renderer makes for that seed.
  clip = synthetic.sample_clip(int(record["seed"]), d.num_frames, d.height, d.width, 2,
                               fps=d.fps)
  for key in ("source_rgb", "target_rgb", "source_c2w", "target_c2w", "intrinsics"):
    np.testing.assert_array_equal(record[key], clip[key], err_msg=key)
  names = builder.info.metadata["settings"]["trajectory_names"]
  assert [names[i] for i in record["target_trajectory"]] == clip["target_trajectories"]
  assert "tensorflow" not in sys.modules


def test_failed_build_leaves_nothing_that_reads_as_a_dataset(tmp_path, tiny_config, monkeypatch):
  calls = []
  real = synthetic.sample_clip

  def flaky(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      raise RuntimeError("renderer died")
    return real(*args, **kwargs)

  monkeypatch.setattr(synthetic, "sample_clip", flaky)
  config = tfds_builder.config_from_data(tiny_config.data)
  with pytest.raises(RuntimeError, match="renderer died"):
    tfds_builder.build(str(tmp_path), config)
  assert not os.path.exists(tfds_builder.dataset_dir(str(tmp_path), config))
  with pytest.raises(tfds_builder.DatasetMissingError, match="realcam data build"):
    tfds_builder.load_builder(str(tmp_path), config)


def test_killed_build_is_detected_and_can_be_rebuilt(tmp_path, tiny_config):
  out = str(tmp_path)
  runner = ("import argparse, sys; from realcam_jax.cli import data as d; "
            "p = argparse.ArgumentParser(); d.add_arguments(p); "
            "sys.exit(d.run(p.parse_args(sys.argv[1:]), []))")
  proc = subprocess.Popen(
      [sys.executable, "-c", runner, "build", "--config", "data:tiny", "--out", out,
       "--split-sizes", "train=200,validation=2,test=2"],
      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  log, done = [], threading.Event()

  def reader():
    for chunk in iter(lambda: proc.stderr.read(64), ""):
      log.append(chunk)
    done.set()

  threading.Thread(target=reader, daemon=True).start()
  deadline = time.time() + 240
  while time.time() < deadline and not done.is_set():
    counts = [int(m) for m in re.findall(r"\| *(\d+)/\d+", "".join(log))]
    if counts and max(counts) >= 3:
      break
    time.sleep(0.2)
  assert proc.poll() is None, "".join(log)[-2000:]
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  config = tfds_builder.config_from_data(tiny_config.data)
  assert glob.glob(os.path.join(out, tfds_builder.NAME, config.name, "incomplete*"))
  with pytest.raises(tfds_builder.DatasetMissingError, match="interrupted build"):
    tfds_builder.load_builder(out, config)
  # Building again next to the leftover works and reads back.
  assert _run_cli(["build", "--config", "data:tiny", "--out", out,
                   "--split-sizes", "train=2,validation=1,test=1"]) == 0
  builder = tfds_builder.load_builder(out, config)
  assert len(builder.as_data_source("train")) == 2
  assert _run_cli(["build", "--config", "data:tiny", "--out", out, "--overwrite",
                   "--split-sizes", "train=3,validation=1,test=0"]) == 0
  builder = tfds_builder.load_builder(out, config)
  assert len(builder.as_data_source("train")) == 3 and "test" not in builder.info.splits


def test_cli_build_errors(tmp_path, tiny_dataset):
  with pytest.raises(UserError, match="--split-sizes item 'train'"):
    _run_cli(["build", "--config", "data:tiny", "--out", str(tmp_path), "--split-sizes", "train"])
  with pytest.raises(UserError, match="SPLIT one of"):
    _run_cli(["build", "--config", "data:tiny", "--out", str(tmp_path),
              "--split-sizes", "dev=3"])
  with pytest.raises(UserError, match="already exists"):
    _run_cli(["build", "--config", "data:tiny", "--out", tiny_dataset[0]])
  with pytest.raises(UserError, match="height=0"):
    _run_cli(["build", "--config", "data:tiny", "--out", str(tmp_path), "--config.data.height=0"])
  with pytest.raises(UserError, match="unknown trajectory family 'spin'"):
    _run_cli(["build", "--config", "data:tiny", "--out", str(tmp_path),
              "--config.data.rig.target_trajectories=('spin',)"])
  with pytest.raises(UserError, match="expected an action"):
    _run_cli([])


def test_data_config_variants():
  demo = get_config("data:demo").data
  assert (demo.height, demo.width, demo.num_frames) == (64, 64, 33)
  assert (demo.num_frames - 1) % 4 == 0                # 9 latent frames after the 4x VAE
  from configs.data import data_config
  assert data_config("tiny").num_frames == 9
  with pytest.raises(ValueError, match="unknown data size 'huge'"):
    data_config("huge")
  a = tfds_builder.config_from_data(data_config("demo"))
  b_cfg = data_config("demo")
  b_cfg.rig.magnitude = (0.1, 0.2)
  assert a.name != tfds_builder.config_from_data(b_cfg).name   # settings change the name
