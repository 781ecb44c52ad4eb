"""VAE trainer: deterministic examples, config checks, train -> resume -> export -> load."""

import json

import jax
import numpy as np
import pytest

from realcam_jax.ckpt import vae_weights
from realcam_jax.config import get_config
from realcam_jax.train import vae as vae_train


pytestmark = pytest.mark.usefixtures("fast_compile")


def fake_pool(data_cfg, split, cache_dir=None):
  """Smooth random videos instead of rendering (the renderer has its own tests)."""
  n = 4 if split == "train" else 2
  rng = np.random.default_rng(0 if split == "train" else 1)
  base = rng.uniform(0, 255, (n, 1, 4, 4, 3))
  drift = np.linspace(0, 40, data_cfg.clip_frames)[None, :, None, None, None]
  video = np.repeat(np.repeat(base + drift, data_cfg.height // 4, 2), data_cfg.width // 4, 3)
  return np.clip(video, 0, 255).astype(np.uint8)


def test_examples_are_deterministic_and_in_range():
  cfg = get_config("vae:tiny")
  pool = fake_pool(cfg.data, "train")
  a, b = vae_train.make_example(pool, 7, cfg.data), vae_train.make_example(pool, 7, cfg.data)
  np.testing.assert_array_equal(a["video"], b["video"])
  assert a["video"].shape == (9, 16, 16, 3) and a["video"].dtype == np.float32
  assert -1.0 <= a["video"].min() and a["video"].max() <= 1.0


def test_bad_data_config_is_reported():
  cfg = get_config("vae:tiny", ["--config.data.train_frames=4", "--config.data.crop=12"])
  with pytest.raises(ValueError, match="train_frames=4 must be 1 \\+ 4\\*k.*crop=12"):
    vae_train.check_data_config(cfg)


def test_train_resume_export(tmp_path, monkeypatch):
  monkeypatch.setattr(vae_train, "load_pool", fake_pool)
  # Two stages (2x spatial, 2x temporal) halve the compile time; the trainer is generic.
  cfg = get_config("vae:tiny", ["--config.model.dim_mult=(1, 2)",
                                "--config.model.temporal_downsample=(True,)"])
  work = str(tmp_path / "work")
  _, state, info = vae_train.train(cfg, work, num_steps=2)
  assert info["last_step"] == 2
  _, state, info = vae_train.train(cfg, work, num_steps=3)     # resumes at 2
  assert int(jax.device_get(state.step)) == 3
  rows = [json.loads(line) for line in open(tmp_path / "work" / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [1, 2, 3]
  assert all(np.isfinite(r["loss"]) and "psnr" in r for r in rows)
  report = vae_train.export(cfg, work, str(tmp_path / "export"))
  assert report["step"] == 3 and np.isfinite(report["psnr_db"]) and report["decode_fps"] > 0
  assert len(report["psnr_db_per_frame"]) == cfg.data.clip_frames
  assert np.all(np.isfinite(report["psnr_db_per_frame"]))
  vae = vae_weights.load_vae(str(tmp_path / "export"))
  assert vae.latents_mean == tuple(report["latents_mean"])
  assert vae.latents_std == tuple(report["latents_std"])


def test_default_training_window_covers_a_steady_state_chunk(caplog):
  """Frames 1 + 2r at least: a chunk whose causal cache comes from a full previous chunk."""
  for size in ("tiny", "demo"):
    cfg = get_config(f"vae:{size}")
    assert cfg.data.train_frames >= 9
    with caplog.at_level("WARNING"):
      vae_train.check_data_config(cfg)
    assert "train_frames" not in caplog.text
  with caplog.at_level("WARNING"):
    vae_train.check_data_config(get_config("vae:demo", ["--config.data.train_frames=5"]))
  assert "data.train_frames=5 trains no chunk" in caplog.text
