"""Latent precompute: `realcam data encode` of a built dataset, read back through the pipeline."""

import json
import os

import numpy as np
import pytest
from flax import nnx

from realcam_jax.cli import main as cli_main
from realcam_jax.config import get_config
from realcam_jax.data import latents


pytestmark = pytest.mark.usefixtures("fast_compile")


def test_encode_cli_and_read_back(tiny_dataset, vae_ckpt, latent_reader_config, tmp_path):
  reader_config = latent_reader_config
  data_dir, data_cfg = tiny_dataset
  ckpt, vae = vae_ckpt
  out = str(tmp_path / "latents")
  rc = cli_main(["data", "encode", "--config", "data:tiny", "--data-dir", data_dir,
                 "--vae", ckpt, "--out", out])
  assert rc == 0
  meta = json.load(open(os.path.join(out, "meta.json")))
  assert meta["splits"] == {"train": 6, "validation": 2, "test": 2}
  assert meta["record_shapes"]["source_latent"] == [3, 2, 2, 4]
  assert meta["record_shapes"]["target_latent"] == [2, 3, 2, 2, 4]
  # Same numbers as encoding the clip directly (normalised posterior mean).
  src = latents.open_build(data_dir, data_cfg.data, ["validation"])["validation"]
  rec = src[1]
  got = latents.LatentSource(out, "validation")[1]
  video = np.concatenate([rec["source_rgb"][None], rec["target_rgb"]]).astype(np.float32)
  want = np.asarray(nnx.jit(lambda m, x: m.encode(x))(vae, video / 127.5 - 1.0))
  np.testing.assert_allclose(got["source_latent"], want[0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got["target_latent"], want[1:], rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(got["target_c2w"], rec["target_c2w"])

  it = latents.make_iterator(reader_config(out), split="train", shard_index=0, shard_count=1)
  batch = next(it)
  assert batch["source_latents"].shape == (2, 3, 2, 2, 4)
  assert batch["target_latents"].shape == (2, 3, 2, 2, 4)
  assert batch["target_poses"].shape == (2, 3, 4, 4) and batch["intrinsics"].shape == (2, 3, 3)
  np.testing.assert_allclose(batch["source_poses"][:, 0], np.broadcast_to(np.eye(4), (2, 4, 4)),
                             atol=1e-5)                    # relative to the first source pose
  state = it.get_state()
  b2 = next(it)
  it.set_state(state)
  np.testing.assert_array_equal(next(it)["target_latents"], b2["target_latents"])

  # LoopAug on latents (the student's training mix): each sequence is a palindrome in
  # time (latent frames 0, 1, 0 for 3 frames) with its poses, so the camera returns.
  loop_cfg = reader_config(out)
  loop_cfg.data.loopaug_fraction = 1.0
  loop = next(latents.make_iterator(loop_cfg, split="train", shard_index=0, shard_count=1))
  for key in ("source_latents", "target_latents", "target_poses"):
    np.testing.assert_array_equal(loop[key][:, 0], loop[key][:, 2], err_msg=key)
    assert not np.array_equal(loop[key][:, 0], loop[key][:, 1]), key

  # An existing output is not replaced without --overwrite; a wrong reader config is named.
  assert cli_main(["data", "encode", "--config", "data:tiny", "--data-dir", data_dir,
                   "--vae", ckpt, "--out", out]) == 2
  bad = reader_config(out)
  bad.data.latent_channels = 16
  with pytest.raises(latents.LatentDatasetError, match="re-encode or fix the config"):
    latents.make_iterator(bad, split="train")


def test_encode_errors(vae_ckpt, tmp_path, capsys):
  _, vae = vae_ckpt
  rec = dict(source_rgb=np.zeros((9, 12, 16, 3), np.uint8),
             target_rgb=np.zeros((1, 9, 12, 16, 3), np.uint8))
  with pytest.raises(latents.LatentDatasetError, match="height 12.*rebuild the dataset"):
    latents.encode_dataset({"train": [rec]}, vae, str(tmp_path / "x"))
  assert not os.path.exists(tmp_path / "x") and os.listdir(tmp_path) == []
  with pytest.raises(latents.LatentDatasetError, match="realcam data encode"):
    latents.LatentSource(str(tmp_path / "nothing"), "train")
  rc = cli_main(["data", "encode", "--config", "data:tiny", "--data-dir", str(tmp_path / "none"),
                 "--vae", "unused", "--out", str(tmp_path / "y")])
  assert rc == 2 and "no complete dataset" in capsys.readouterr().err
