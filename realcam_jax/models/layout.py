"""Token layouts for source/target pairs (design.md §3).

`interleaved`: frames ordered `[s1, t1, s2, t2, ..., sf, tf]` (RealCam's cross-frame
in-context layout). `prefix`: `[s1..sf, t1..tf]` (ReCamMaster baseline). Same model,
same weights; only the frame order, the RoPE temporal indices and therefore the
attention pattern change.

RoPE temporal index per frame (`pair_rope`):
  shared      source i and target i both get index i (a learned stream embedding
              tells them apart). In the prefix layout, too, s_i and t_i share i:
              every token keeps its interleaved position, so prefix + shared is a
              permutation of interleaved + shared and computes the same function.
  sequential  the frame's position in the sequence (interleaved: 2i and 2i+1;
              prefix: i and f+i).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

LAYOUTS = ("interleaved", "prefix")
PAIR_ROPES = ("shared", "sequential")


def _check(layout: str, pair_rope: str | None = None):
  if layout not in LAYOUTS:
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
  if pair_rope is not None and pair_rope not in PAIR_ROPES:
    raise ValueError(f"unknown pair_rope {pair_rope!r}; expected one of {PAIR_ROPES}")


def combine(source, target, layout: str):
  """[B, F, ...] x 2 -> [B, 2F, ...] in the given layout (numpy in -> numpy out)."""
  _check(layout)
  if source.shape != target.shape:
    raise ValueError(f"source {source.shape} and target {target.shape} must have the same shape")
  xp = np if isinstance(source, np.ndarray) and isinstance(target, np.ndarray) else jnp
  if layout == "prefix":
    return xp.concatenate([source, target], axis=1)
  b, f = source.shape[:2]
  return xp.stack([source, target], axis=2).reshape((b, 2 * f) + source.shape[2:])


def split(x, layout: str):
  """Inverse of `combine`: [B, 2F, ...] -> (source, target), each [B, F, ...]."""
  _check(layout)
  if x.shape[1] % 2:
    raise ValueError(f"expected an even number of frames (pairs), got {x.shape[1]}")
  f = x.shape[1] // 2
  if layout == "prefix":
    return x[:, :f], x[:, f:]
  pairs = x.reshape((x.shape[0], f, 2) + x.shape[2:])
  return pairs[:, :, 0], pairs[:, :, 1]


def is_target(num_pairs: int, layout: str) -> np.ndarray:
  """bool[2F]: which frames of the combined sequence are target frames."""
  _check(layout)
  src = np.zeros((1, num_pairs), bool)
  return combine(src, ~src, layout)[0]


def frame_positions(num_pairs: int, layout: str, pair_rope: str, first_pair: int = 0) -> np.ndarray:
  """int32[2F]: RoPE temporal index of each frame of the combined sequence.

  `first_pair` offsets the pair index (for chunks of a stream: the chunk's first pair).
  """
  _check(layout, pair_rope)
  i = np.arange(first_pair, first_pair + num_pairs, dtype=np.int32)
  if pair_rope == "shared":
    src, tgt = i, i
  elif layout == "interleaved":
    src, tgt = 2 * i, 2 * i + 1
  else:
    # Prefix, sequential: the stream's length must be known; chunked prefix streaming
    # is not defined, so positions follow the whole-sequence order.
    src, tgt = i, i + num_pairs
  return combine(src[None], tgt[None], layout)[0]
