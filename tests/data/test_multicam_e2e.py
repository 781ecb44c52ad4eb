"""Downloaded MultiCamVideo -> teacher training, the whole path on a fake tree:
import, text encode (tiny random umT5), latent encode (tiny VAE, over 8 devices), one
teacher training step; plus the latent encode's resumption."""

import json
import os

import numpy as np
import pytest
from flax import nnx

import fake_multicam
import fake_text
from realcam_jax.ckpt import orbax_io
from realcam_jax.cli import main
from realcam_jax.config import get_config
from realcam_jax.data import latent_encode, latents, multicam as mc, text_store
from realcam_jax.data.multicam_import import open_imported
from realcam_jax.models.vae import create_vae

pytest.importorskip("torch")
pytest.importorskip("transformers")

FRAMES = 9


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
  root = tmp_path_factory.mktemp("e2e")
  poses = fake_multicam.make_tree(str(root / "src"), scenes=2, cameras=2, frames=FRAMES)
  fake_text.make_encoder_folder(str(root / "umt5"), get_config("configs/text.py:tiny").text)
  vae_config = get_config("vae:tiny")
  orbax_io.save_state(str(root / "vae"), nnx.state(create_vae(vae_config.model, seed=3)),
                      vae_config)
  return root, poses


def test_multicamvideo_to_teacher_step(paths, capsys):
  root, poses = paths
  data, text, lat = str(root / "data"), str(root / "text"), str(root / "latents")
  assert main(["data", "import", "multicamvideo", "--src", str(root / "src"), "--out", data,
               "--size", "32x32", "--frames", str(FRAMES)]) == 0
  assert main(["text", "encode", "--config", "configs/text.py:tiny", "--weights",
               str(root / "umt5"), "--captions", data, "--out", text,
               "--config.text.text_len=4"]) == 0
  assert main(["data", "encode", "--dataset", data, "--vae", str(root / "vae"), "--out", lat,
               "--batch-size", "4"]) == 0
  out = capsys.readouterr().out
  assert "pixel frames/s on 8 x cpu" in out, out

  # Poses read back equal the rendered ones, through import and latent encoding.
  src = latents.LatentSource(lat, "train")
  assert len(src) == 4 and src.meta["record_shapes"]["source_latent"] == [3, 4, 4, 4]
  store = text_store.TextStore(text)
  for i in range(len(src)):
    rec = src[i]
    scene = f"{fake_multicam.FOCAL}/scene{1 + i // 2}"
    s, t = int(rec["source_camera"]), int(rec["target_camera"][0])
    np.testing.assert_allclose(rec["source_c2w"], poses[scene][s], atol=1e-5)
    np.testing.assert_allclose(rec["target_c2w"][0], poses[scene][t], atol=1e-5)
    assert rec["caption_sha1"].tobytes().hex() in store
  assert src.meta["encode_stats"]["devices"] == 8

  # One teacher training step on the result, reading the caption embeddings.
  from realcam_jax.train import data as train_data
  from realcam_jax.train import run
  config = get_config("teacher:tiny")
  config.data.source = "latents"
  config.data.dataset_dir = lat
  config.data.text_dir = text
  batch = next(train_data.make_iterator(config))
  assert batch["text"].shape == (8, 4, 16) and np.abs(batch["text"]).max() > 0
  np.testing.assert_array_equal(batch["text_uncond"][0], store.empty())
  assert not np.allclose(batch["text"][0], batch["text_uncond"][0])
  _, state, info = run.run(config, str(root / "run"), num_steps=1)
  assert int(state.step) == 1


def test_latent_encode_resumes(paths, tmp_path):
  root, _ = paths
  data = str(tmp_path / "data")
  from realcam_jax.data import multicam_import
  multicam_import.run_import(str(root / "src"), data, mc.ImportSettings(height=32, width=32,
                                                                        frames=FRAMES))
  sources = open_imported(data)
  from realcam_jax.ckpt import vae_weights
  vae = vae_weights.load_vae(str(root / "vae"))
  mesh = get_config("teacher:tiny").mesh
  mesh.data, mesh.context = 2, 4       # the batch over 2 devices (the VAE ignores `context`)
  out = str(tmp_path / "lat")

  class Interrupting:
    """The records, raising KeyboardInterrupt when record 2 is read (after batch 1)."""

    def __init__(self, records):
      self.records = records

    def __len__(self):
      return len(self.records)

    def __getitem__(self, i):
      if i == 2:
        raise KeyboardInterrupt
      return self.records[i]

  with pytest.raises(KeyboardInterrupt):
    latent_encode.encode_dataset({"train": Interrupting(sources["train"])}, vae, out,
                                 mesh_config=mesh, batch_size=2, log=lambda _: None)
  with open(os.path.join(out + ".partial", latent_encode.PROGRESS)) as f:
    assert json.load(f)["done"] == {"train": 2}
  lines = []
  latent_encode.encode_dataset(sources, vae, out, mesh_config=mesh, batch_size=2,
                               log=lines.append)
  assert lines == ["resuming: {'train': 2} records already encoded"]
  whole = str(tmp_path / "whole")
  latent_encode.encode_dataset(sources, vae, whole, mesh_config=mesh, batch_size=4)
  a, b = latents.LatentSource(out, "train"), latents.LatentSource(whole, "train")
  for i in range(4):
    np.testing.assert_allclose(a[i]["target_latent"], b[i]["target_latent"], atol=1e-5)
  mesh.data, mesh.context = -1, 1
  with pytest.raises(latents.LatentDatasetError, match="multiple of the 8 devices"):
    latent_encode.encode_dataset(sources, vae, str(tmp_path / "x"), mesh_config=mesh,
                                 batch_size=3)
