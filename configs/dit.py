"""The bare DiT backbone at a given size: `configs/dit.py:tiny|demo|wan2_1_1_3b`.

Used by weight conversion and the speed probe; the teacher/student configs embed
the same `model` section.
"""

import ml_collections

from configs import common


def get_config(arg=None):
  size = arg or "tiny"
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = common.model_config(size)
  config.mesh = common.mesh_config()
  # Speed probe shape (launch/bench_dit.py): latent frames, latent height, width.
  config.bench = ml_collections.ConfigDict(dict(
      batch=1, frames={"tiny": 4, "demo": 18, "wan2_1_1_3b": 42}[size],
      height={"tiny": 8, "demo": 8, "wan2_1_1_3b": 60}[size],
      width={"tiny": 8, "demo": 8, "wan2_1_1_3b": 104}[size]))
  return config
