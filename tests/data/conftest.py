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
