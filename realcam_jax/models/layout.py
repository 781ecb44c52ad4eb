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


def pair_stride(layout: str, pair_rope: str) -> int:
  """RoPE temporal positions per frame pair: 2 for interleaved + sequential (2i, 2i+1), else 1.

  Positions are affine in the pair index, so moving a chunk by d pairs moves every one of its
  frames by `pair_stride * d` (what the KV cache uses to re-position cached keys).
  """
  _check(layout, pair_rope)
  return 2 if (pair_rope == "sequential" and layout == "interleaved") else 1


def pair_frame_positions(pair_pos, layout: str, pair_rope: str):
  """int32[2F]: RoPE temporal index of each frame of the combined sequence of the pairs whose
  pair indices are `pair_pos` int[F] (numpy in -> numpy out; a traced array works too).

  shared: source and target of pair p both at p; interleaved + sequential: 2p and 2p + 1;
  prefix + sequential: p and p + F (whole-sequence order, see `frame_positions`).
  """
  _check(layout, pair_rope)
  xp = np if isinstance(pair_pos, np.ndarray) else jnp
  p = xp.asarray(pair_pos).astype(np.int32)
  if p.ndim != 1:
    raise ValueError(f"pair positions must be int[F], got shape {p.shape}")
  if pair_rope == "shared":
    src, tgt = p, p
  elif layout == "interleaved":
    src, tgt = 2 * p, 2 * p + 1
  else:
    src, tgt = p, p + p.shape[0]
  return combine(src[None], tgt[None], layout)[0]


def frame_positions(num_pairs: int, layout: str, pair_rope: str, first_pair=0):
  """int32[2F]: RoPE temporal index of each frame of the combined sequence of F pairs.

  `first_pair` (an int, or a traced i32[] inside jit) is the pair index of the first pair
  (for chunks of a stream: the chunk's first pair), so the pairs are first_pair + 0..F-1.
  Interleaved + sequential chunk c of K pairs thus gets 2cK + 0..2K-1, continuing the
  whole-sequence positions. Prefix + sequential places target frame i at F + i: it depends
  on the sequence length, so it has no chunked form (the student refuses it).
  """
  _check(layout, pair_rope)
  base = pair_frame_positions(np.arange(num_pairs, dtype=np.int32), layout, pair_rope)
  if isinstance(first_pair, (int, np.integer)):
    return base + np.int32(pair_stride(layout, pair_rope) * int(first_pair))
  return jnp.asarray(base) + pair_stride(layout, pair_rope) * jnp.asarray(first_pair, jnp.int32)
