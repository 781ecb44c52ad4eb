"""The umT5 text encoder of Wan2.1: `configs/text.py:tiny|umt5_xxl`.

  realcam text encode --config configs/text.py:umt5_xxl --weights models_t5_umt5-xxl-enc-bf16.pth \
      --tokenizer google/umt5-xxl --captions DATASET_DIR --out TEXT_DIR

Sizes:
  tiny      unit tests: vocab 64, width 16, 2 heads of 8, FFN 32, 2 layers, 16 tokens.
  umt5_xxl  Wan2.1's encoder (`models_t5_umt5-xxl-enc-bf16.pth`, transformers
            `UMT5EncoderModel` of google/umt5-xxl): vocab 256384, width 4096, 64 heads
            of 64, gated-GELU FFN 10240, 24 layers, 32 relative-position buckets
            (max distance 128) per layer, 512 tokens; bf16 weights (11 GB).

`text.text_len` is the token count every caption is padded / truncated to (Wan: 512);
embeddings are stored trimmed to the caption's tokens and zero-padded back to
`text_len` when read (what Wan's DiT does with the encoder output).
"""

import ml_collections

from configs import common

_SIZES = {
    "tiny": dict(vocab_size=64, dim=16, num_heads=2, head_dim=8, ffn_dim=32, num_layers=2,
                 num_buckets=8, max_distance=16, text_len=16),
    "umt5_xxl": dict(vocab_size=256384, dim=4096, num_heads=64, head_dim=64, ffn_dim=10240,
                     num_layers=24, num_buckets=32, max_distance=128, text_len=512),
}


def text_config(size: str = "umt5_xxl") -> ml_collections.ConfigDict:
  """The `config.text` section (names follow Wan's `wan/modules/t5.py`)."""
  if size not in _SIZES:
    raise ValueError(f"unknown text encoder size {size!r}; expected one of {sorted(_SIZES)}")
  c = ml_collections.ConfigDict(dict(_SIZES[size]))
  c.size = size
  c.eps = 1e-6
  c.dtype = "float32"          # activations; bfloat16 on accelerators (Wan runs it in bf16)
  c.param_dtype = "float32" if size == "tiny" else "bfloat16"
  c.scan_layers = True
  c.clean = "whitespace"       # Wan's prompt cleaning: html unescape + collapse whitespace
  return c


def get_config(arg=None):
  size = arg or "umt5_xxl"
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.text = text_config(size)
  config.mesh = common.mesh_config()
  # Captions per encoder call (a multiple of the device count; the last batch is padded).
  config.batch_size = 8 if size == "tiny" else 32
  config.store_dtype = "bfloat16"  # bfloat16 (Wan's output dtype, half the disk) | float32
  return config
