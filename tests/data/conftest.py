"""Shared fixtures: one tiny dataset built once per test session."""

import pytest

from realcam_jax.config import get_config
from realcam_jax.data import tfds_builder


@pytest.fixture(scope="session")
def tiny_config():
  """`configs/data.py:tiny` (16x16 px, 9 frames, 2 target cameras)."""
  return get_config("data:tiny")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_config):
  """(data_dir, config) of a built tiny dataset: train 6, validation 2, test 2 clips."""
  data_dir = str(tmp_path_factory.mktemp("tiny_ds"))
  tfds_builder.build(data_dir, tfds_builder.config_from_data(tiny_config.data))
  return data_dir, tiny_config


@pytest.fixture(scope="session")
def vae_ckpt(tmp_path_factory):
  """The tiny VAE with a non-identity latent normalisation, saved like an exported one."""
  from flax import nnx

  from realcam_jax.ckpt import orbax_io
  from realcam_jax.models.vae import create_vae
  config = get_config("vae:tiny")
  config.model.latents_mean = (0.1, -0.2, 0.3, 0.0)
  config.model.latents_std = (0.5, 2.0, 1.0, 1.5)
  vae = create_vae(config.model, seed=3)
  path = str(tmp_path_factory.mktemp("vae") / "ckpt")
  orbax_io.save_state(path, nnx.state(vae), config)
  return path, vae


@pytest.fixture(scope="session")
def latent_reader_config():
  """`make(root)`: a trainer config reading the tiny latent dataset at `root`."""
  import ml_collections

  def make(root):
    return ml_collections.ConfigDict(dict(
        seed=0, train=dict(batch_size=2), model=dict(text_len=4, text_dim=16),
        data=dict(dataset_dir=root, latent_frames=3, latent_height=2, latent_width=2,
                  latent_channels=4, num_workers=0)))
  return make
