"""Analytic FLOP count of one WanDiT forward (matrix multiplies only, 2 FLOPs per MAC).

Per sample, with T = (frames/pt) * (h/ph) * (w/pw) tokens, F' = frames/pt token
frames, S = T + cache_len keys in self-attention, D dim, Fd FFN width, Lt text
tokens, Dt text dim, L layers, Cp = C * pt * ph * pw:

  patch embedding    2 T Cp_in D
  text embedding     2 Lt (Dt D + D^2)
  time embedding     2 F' (freq_dim D + D^2 + 6 D^2)      (per-frame timesteps)
  per layer:
    self-attention   8 T D^2 (q, k, v, out)  +  4 T S D (scores and weighted sum)
    cross-attention  4 T D^2 (q, out)  +  4 Lt D^2 (k, v)  +  4 T Lt D
    FFN              4 T D Fd
  output head        2 T D Cp_out

Norms, RoPE, softmax and modulation (O(T D)) are left out: they are < 1% at
the sizes of interest and are not matmul-unit work.
"""

from __future__ import annotations

import math


def dit_flops(config, frames: int, h: int, w: int, text_len: int, *, batch: int = 1,
              cache_len: int = 0) -> int:
  """FLOPs of one forward of `batch` samples of `frames` latent frames of h x w latents.

  Args:
    config: the full config (with `.model`) or the model section.
    frames, h, w: latent frames, height and width.
    text_len: text tokens Lt.
    batch: samples B.
    cache_len: extra (cached) key slots S - T per sample in self-attention.
  """
  m = config.model if hasattr(config, "model") else config
  pt, ph, pw = (int(p) for p in m.patch_size)
  fp = frames // pt
  t = fp * (h // ph) * (w // pw)
  d, fd, lt = m.dim, m.ffn_dim, text_len
  s = t + cache_len
  cp = pt * ph * pw
  embed = 2 * t * m.in_channels * cp * d + 2 * lt * (m.text_dim * d + d * d) \
      + 2 * fp * (m.freq_dim * d + d * d + 6 * d * d)
  layer = (8 * t * d * d + 4 * t * s * d
           + 4 * t * d * d + 4 * lt * d * d + 4 * t * lt * d
           + 4 * t * d * fd)
  head = 2 * t * d * m.out_channels * cp
  return int(batch * (embed + m.num_layers * layer + head))


def dit_params(config) -> int:
  """Parameter count of WanDiT (matches `nnx.eval_shape` of the model)."""
  m = config.model if hasattr(config, "model") else config
  cp = math.prod(int(p) for p in m.patch_size)
  d = m.dim
  lin = lambda i, o: i * o + o  # noqa: E731
  embed = (lin(m.in_channels * cp, d) + lin(m.freq_dim, d) + lin(d, d) + lin(d, 6 * d)
           + lin(m.text_dim, d) + lin(d, d))
  attn = 4 * lin(d, d) + 2 * d
  block = 2 * attn + lin(d, m.ffn_dim) + lin(m.ffn_dim, d) + 6 * d
  block += 2 * d if m.cross_attn_norm else 0
  cond = m.get("block_cond_dim", 0)
  block += lin(cond, d) if cond > 0 else 0
  return int(embed + m.num_layers * block + lin(d, m.out_channels * cp) + 2 * d)
