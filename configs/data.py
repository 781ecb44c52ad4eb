"""The synthetic multi-camera dataset and its input pipeline: `configs/data.py:SIZE[,near]`.

  realcam data build --config configs/data.py:demo --out DATA_DIR

Training configs embed the same section: `config.data = data_config("demo")`
(importable as `configs.data.data_config`).

Sizes:
  tiny  unit tests: 16x16 px, 9 frames (3 latent frames), 2 target cameras,
        a handful of clips per split.
  demo  64x64 px, 33 frames (9 latent frames after the 4x temporal VAE),
        1 target camera; 2048 train / 64 validation / 64 test clips
        (~150 KB per clip on disk, ~320 MB; renders in ~6 min on 2 cores).

Variants (after a comma):
  near  half of the target cameras start at the source camera and move away along
        MultiCamVideo-like paths (`rig.near_fraction = 0.5`; data/near_source.py), the
        other half are today's 15-75 deg pairs: the cases users meet first (the camera
        at or near the source) are in the training mix (issue 19).
"""

import ml_collections

from configs.common import MODEL_SIZES
from realcam_jax.data.rig import DEFAULT_RIG
from realcam_jax.data.scene import DEFAULT_SCENE

_SIZES = {
    "tiny": dict(height=16, width=16, num_frames=9, num_target_cameras=2,
                 split_sizes=dict(train=6, validation=2, test=2), batch_size=2),
    "demo": dict(height=64, width=64, num_frames=33, num_target_cameras=1,
                 split_sizes=dict(train=2048, validation=64, test=64), batch_size=8),
}


def data_config(size: str = "demo") -> ml_collections.ConfigDict:
  """The `config.data` section for a size in {tiny, demo}."""
  if size not in _SIZES:
    raise ValueError(f"unknown data size {size!r}; expected one of {sorted(_SIZES)}")
  s = _SIZES[size]
  c = ml_collections.ConfigDict()
  c.size = size
  # --- What the builder renders (realcam_jax/data/tfds_builder.py).
  c.name = ""                   # builder config name; "" = derived from sizes + settings hash
  c.height = s["height"]
  c.width = s["width"]
  c.num_frames = s["num_frames"]            # T pixel frames per camera (1 + 4k for the VAE)
  c.num_target_cameras = s["num_target_cameras"]
  c.fps = 15.0                              # scene seconds per frame = 1 / fps
  c.split_sizes = ml_collections.ConfigDict(s["split_sizes"])
  c.seed_offset = 0                         # shifts every split's seed range
  c.extra_features = ()                     # any of ("static_mask", "depth")
  c.scene = ml_collections.ConfigDict(DEFAULT_SCENE)
  c.rig = ml_collections.ConfigDict(DEFAULT_RIG)
  # --- How the pipeline reads it (realcam_jax/data/pipeline.py).
  c.data_dir = ""                           # root passed to `realcam data build --out`
  c.train_frames = s["num_frames"]          # window length fed to the model (<= num_frames)
  c.batch_size = s["batch_size"]
  c.num_workers = 0                         # grain worker processes (0: in-process)
  c.num_threads = 4                         # grain reader threads per process
  c.loopaug_fraction = 0.0                  # share of training examples made by LoopAug
  c.loopaug_turn = (0.5, 0.5)               # turn position in the window (0.5: ends at start)
  c.loopaug_variant = "palindrome"          # palindrome | forward_source (data/loopaug.py)
  c.source_key = "source_rgb"               # frame streams (latent datasets: *_latent)
  c.target_key = "target_rgb"
  model = MODEL_SIZES["tiny" if size == "tiny" else "demo"]
  c.text_len = model["text_len"]            # null text embedding shape when a record has none
  c.text_dim = model["text_dim"]
  return c


VARIANTS = {
    "near": lambda d: setattr(d.rig, "near_fraction", 0.5),
}


def get_config(arg=None):
  size, *variants = (arg or "demo").split(",")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = data_config(size)
  for name in variants:
    if name not in VARIANTS:
      raise ValueError(f"unknown data variant {name!r}; expected any of {sorted(VARIANTS)}")
    VARIANTS[name](config.data)
  return config
