"""Cost model of the streaming student: FLOPs and HBM bytes per generated frame.

A steady-state chunk (K frame pairs, r K generated pixel frames; r = the VAE's temporal
factor, 4) costs: VAE encode of its r K source frames + the DiT passes + VAE decode of
its K target latents. Per generated frame = that / (r K). Batch 1, as a stream runs.

DiT passes (`chunk_passes`). T = 2 K P tokens per chunk (P per latent frame), S = the
cached key slots every query reads: the KV buffer of (sink + window) chunks of T tokens
(an unlimited cache, window 0: ceil(max_frames / K) chunks, every slot computed, as the
reference attention does), n = len(student.timesteps) denoising steps:
  source_once False (the student today): n denoising passes + 1 commit pass, each over
    the whole chunk: T queries against its T own keys + S cached keys.
  source_once True (`config.student.source_once`, modelled here from the field alone):
    1 source pass (the K source frames: T/2 queries against T/2 own + S cached keys, no
    camera) + n + 1 target passes (the K target frames: T/2 queries against T/2 own +
    T/2 chunk-source + S cached keys). The embedding (patch embedding of the 2K frames,
    the source skip of the K source frames when model.source_skip) runs in every pass.
  The commit writes the chunk's T keys and values into the cache once.

FLOPs: matrix multiplies only, 2 per MAC, as `models/flops.py` (norms, RoPE, softmax,
modulation left out: < 1%); checked against every dot_general / conv of the jaxpr
(`bench/jaxpr_cost.py`, tests/bench/test_cost.py).

Bytes (HBM traffic), this explicit model:
  weights   every pass reads each matmul kernel it uses once, at the param dtype (the
            weights do not stay on chip from one pass to the next);
  kv_read   every pass reads the keys and values of its S (+ T/2) extra slots once per
            layer, at the cache dtype;
  kv_write  the commit writes the chunk's T keys and values per layer, cache dtype;
  act       every matmul reads its activation operand and writes its result once, at the
            activation dtype (the time embedding runs in f32); elementwise ops (norms,
            RoPE, modulation, gates, GELU) are taken as fused into a neighbouring matmul;
            attention is one fused kernel (flash: scores stay on chip) reading q and the
            chunk's own k, v and writing o. `fused_attention=False` models the reference
            einsum attention instead (f32 scores written, probabilities read back), which
            is what the jaxpr of the CPU model holds: the tests check that variant
            exactly against the jaxpr's matmul operands;
  VAE       the same rule per convolution: its input as the conv sees it (the causal
            cache frames prepended, a nearest-upsampled input at its upsampled size), its
            kernel, its output, at the VAE's dtype; the per-frame mid-block attention
            writes and reads its scores. The conv3d form (accelerators), not XLA:CPU's
            `taps` form (same FLOPs, kt x the input bytes).
Time on an accelerator (`seconds`): each part (the DiT passes of a chunk, the VAE
encoder, the VAE decoder) at its roofline, max(FLOPs / peak, bytes / bandwidth), the
parts one after another. A prediction at peak: real kernels reach a fraction of it
(the DiT reached 56% of the bf16 peak on an H100, docs/benchmarks.md `gpu_dit`).
"""

from __future__ import annotations

import dataclasses
import math

from realcam_jax.models.flops import dit_flops

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclasses.dataclass(frozen=True)
class Accelerator:
  """Peak dense matmul FLOP/s per dtype and HBM bandwidth of one chip."""
  name: str
  flops_per_s: dict
  bytes_per_s: float

  def peak(self, dtype: str) -> float:
    return self.flops_per_s.get(dtype, self.flops_per_s["bfloat16"])


# NVIDIA H100 SXM: dense bf16 989 TFLOP/s, dense TF32 (XLA's default for f32 matmuls and
# convs on GPU) 495 TFLOP/s, HBM3 3.35 TB/s.
H100 = Accelerator("H100 SXM (dense bf16 989 TFLOP/s, TF32 495 TFLOP/s, HBM3 3.35 TB/s)",
                   {"bfloat16": 989e12, "float16": 989e12, "float32": 495e12}, 3.35e12)


@dataclasses.dataclass(frozen=True)
class Cost:
  """FLOPs and bytes (weights read, KV cache read / written, activations)."""
  flops: float = 0
  weights: float = 0
  kv_read: float = 0
  kv_write: float = 0
  act: float = 0

  @property
  def bytes(self) -> float:
    return self.weights + self.kv_read + self.kv_write + self.act

  def __add__(self, other: "Cost") -> "Cost":
    return Cost(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

  def __mul__(self, k: float) -> "Cost":
    return Cost(*(a * k for a in dataclasses.astuple(self)))

  __rmul__ = __mul__

  def seconds(self, acc: Accelerator, dtype: str = "bfloat16") -> float:
    """Roofline time: max(FLOPs / peak, bytes / bandwidth)."""
    return max(self.flops / acc.peak(dtype), self.bytes / acc.bytes_per_s)

  def as_dict(self) -> dict:
    return {**dataclasses.asdict(self), "bytes": self.bytes}


@dataclasses.dataclass(frozen=True)
class Dtypes:
  """Activation, weight and KV-cache dtypes (cache None: the activation dtype)."""
  act: str = "bfloat16"
  weight: str = "bfloat16"
  cache: str | None = None

  def nbytes(self, which: str) -> int:
    name = getattr(self, which) or self.act
    if name not in DTYPE_BYTES:
      raise ValueError(f"unknown dtype {name!r} for the {which} bytes; expected one of "
                       f"{sorted(DTYPE_BYTES)}")
    return DTYPE_BYTES[name]


def config_dtypes(config) -> Dtypes:
  """The dtypes a config runs with (model.dtype / model.param_dtype, cache = activations)."""
  m = config.model if hasattr(config, "model") else config
  return Dtypes(act=str(m.dtype), weight=str(m.param_dtype))


def _cond_dim(m) -> int:
  from realcam_jax.models.realcam import camera_cond_dim
  return camera_cond_dim(m)


def dit_pass(m, frames: int, latent_hw: tuple[int, int], text_len: int, *, extra_keys: int = 0,
             camera_frames: int = 0, skip_frames: int = 0, embed_frames: int | None = None,
             dtypes: Dtypes = Dtypes(), fused_attention: bool = True) -> Cost:
  """One RealCamDiT forward (batch 1) whose blocks run `frames` token frames.

  Args:
    m: the model config section (or a config with `.model`).
    frames: token frames through the blocks (T = frames * P queries).
    latent_hw: latent (h, w); P = (h / ph) (w / pw).
    text_len: text tokens Lt.
    extra_keys: keys / values read from caches besides the T own ones.
    camera_frames: frames whose camera features go through cond_proj (0: no camera).
    skip_frames: source frames through the source skip (0: none).
    embed_frames: frames patch-embedded (default `frames`).
  """
  m = m.model if hasattr(m, "model") else m
  pt, ph, pw = (int(p) for p in m.patch_size)
  h, w = latent_hw
  p = (h // ph) * (w // pw)
  fp = frames // pt
  t = fp * p
  te = (frames if embed_frames is None else embed_frames) // pt * p
  d, fd, nl, nh, lt = m.dim, m.ffn_dim, m.num_layers, m.num_heads, text_len
  cp_in, cp_out = m.in_channels * pt * ph * pw, m.out_channels * pt * ph * pw
  cb = _cond_dim(m) if camera_frames else 0
  rows = camera_frames // pt * (p if m.camera_encoding == "plucker" else 1) if cb else 0
  ts = skip_frames // pt * p
  e = extra_keys

  flops = (dit_flops(m, frames, h, w, text_len, cache_len=extra_keys)
           + 2 * (te - t) * cp_in * d + nl * 2 * rows * cb * d + 2 * ts * d * d)
  weights = (cp_in * d + m.text_dim * d + d * d + m.freq_dim * d + 7 * d * d
             + nl * (8 * d * d + 2 * d * fd + cb * d) + d * cp_out + (d * d if ts else 0))
  act = te * (cp_in + d) + lt * (m.text_dim + 3 * d) + 2 * ts * d + t * d + t * cp_out
  f32 = fp * (m.freq_dim + 10 * d)                              # the time embedding
  layer = (rows * (cb + d)                      # cond_proj
           + 8 * t * d + 4 * t * d               # self: q, k, v, out projections; q, k, v, o
           + 4 * t * d + 4 * lt * d              # cross: q, out on T; k, v on the text
           + 2 * t * d + 2 * lt * d              # cross attention: q, o; text k, v
           + 2 * t * d + 2 * t * fd)             # FFN
  act += nl * layer
  if not fused_attention:          # scores written in f32, probabilities read back
    act += nl * nh * t * ((t + e) + lt)
    f32 += nl * nh * t * ((t + e) + lt)
  return Cost(flops=flops, weights=weights * dtypes.nbytes("weight"),
              kv_read=nl * 2 * e * d * dtypes.nbytes("cache"),
              act=act * dtypes.nbytes("act") + 4 * f32)


@dataclasses.dataclass(frozen=True)
class StudentOption:
  """What a streaming student chunk costs depends on (`option`, from `config.student`)."""
  steps: int
  chunk_pairs: int
  sink_chunks: int
  window_chunks: int         # 0 = unlimited (max_frames)
  max_frames: int
  source_once: bool = False
  cache_dtype: str | None = None    # None = the activation dtype

  @property
  def cache_chunks(self) -> int:
    """Chunks in the KV buffer (as `causal.cache_layout`)."""
    if self.window_chunks > 0:
      return self.sink_chunks + self.window_chunks
    return self.sink_chunks + max(1, math.ceil(self.max_frames / self.chunk_pairs)
                                  - self.sink_chunks)

  def describe(self) -> str:
    cache = (f"window {self.window_chunks} + sink {self.sink_chunks}" if self.window_chunks
             else f"unlimited ({self.max_frames} latent frames)")
    return (f"{self.steps} steps, {cache}, cache {self.cache_dtype or 'act dtype'}"
            f"{', source_once' if self.source_once else ''}")


def option(config, **overrides) -> StudentOption:
  """The `StudentOption` of `config.student`, with `overrides` (fields of StudentOption)."""
  s = config.student
  base = StudentOption(steps=len(tuple(s.timesteps)), chunk_pairs=int(s.chunk_pairs),
                       sink_chunks=int(s.sink_chunks), window_chunks=int(s.window_chunks),
                       max_frames=int(s.max_frames),
                       source_once=bool(s.get("source_once", False)),
                       cache_dtype=s.get("cache_dtype", None))
  return dataclasses.replace(base, **overrides)


def tokens_per_frame(m, latent_hw) -> int:
  _, ph, pw = (int(p) for p in m.patch_size)
  return (latent_hw[0] // ph) * (latent_hw[1] // pw)


def chunk_passes(config, opt: StudentOption, latent_hw) -> list[tuple[str, int, dict]]:
  """[(name, count, `dit_pass` keyword arguments)] of one steady chunk (module docstring)."""
  m = config.model
  k = opt.chunk_pairs
  half = k * tokens_per_frame(m, latent_hw)                 # T / 2: one stream of the chunk
  cached = opt.cache_chunks * 2 * half
  cam = m.camera_encoding != "none"
  skip = k if m.source_skip else 0
  if not opt.source_once:
    kw = dict(frames=2 * k, extra_keys=cached, camera_frames=2 * k if cam else 0,
              skip_frames=skip)
    return [("denoise", opt.steps, kw), ("commit", 1, kw)]
  src = dict(frames=k, embed_frames=2 * k, extra_keys=cached, skip_frames=skip)
  tgt = dict(frames=k, embed_frames=2 * k, extra_keys=cached + half,
             camera_frames=k if cam else 0, skip_frames=skip)
  return [("source", 1, src), ("denoise", opt.steps, tgt), ("commit", 1, tgt)]


def with_cache(dtypes: Dtypes, opt: StudentOption) -> Dtypes:
  """`dtypes` with the option's KV-cache dtype (when it sets one)."""
  return dataclasses.replace(dtypes, cache=opt.cache_dtype) if opt.cache_dtype else dtypes


def dit_chunk(config, opt: StudentOption, latent_hw, *, dtypes: Dtypes | None = None,
              fused_attention: bool = True) -> Cost:
  """DiT cost of one steady chunk: its passes + the commit's KV write."""
  m = config.model
  dtypes = with_cache(dtypes or config_dtypes(config), opt)
  total = Cost()
  for _, n, kw in chunk_passes(config, opt, latent_hw):
    total = total + n * dit_pass(m, text_len=int(m.text_len), latent_hw=latent_hw,
                                 dtypes=dtypes, fused_attention=fused_attention, **kw)
  t = 2 * opt.chunk_pairs * tokens_per_frame(m, latent_hw)
  return total + Cost(kv_write=m.num_layers * 2 * t * m.dim * dtypes.nbytes("cache"))


# ----------------------------------------------------------------------------- VAE

class _Ops:
  """Accumulates FLOPs and bytes of convs / matmuls (elements; see the module docstring)."""

  def __init__(self):
    self.flops = self.weights = self.act = 0

  def conv(self, t_in, t_out, hw_in, hw_out, cin, cout, kernel):
    kt, kh, kw = kernel
    n_out = t_out * hw_out[0] * hw_out[1] * cout
    self.flops += 2 * n_out * kt * kh * kw * cin
    self.weights += kt * kh * kw * cin * cout
    self.act += t_in * hw_in[0] * hw_in[1] * cin + n_out

  def causal3(self, t, hw, cin, cout):       # 3x3x3, 2 cached frames in front
    self.conv(t + 2, t, hw, hw, cin, cout, (3, 3, 3))

  def point(self, t, hw, cin, cout):
    self.conv(t, t, hw, hw, cin, cout, (1, 1, 1))

  def res(self, t, hw, cin, cout):
    self.causal3(t, hw, cin, cout)
    self.causal3(t, hw, cout, cout)
    if cin != cout:
      self.point(t, hw, cin, cout)

  def mid(self, t, hw, c):
    self.res(t, hw, c, c)
    n = hw[0] * hw[1]
    self.point(t, hw, c, 3 * c)
    self.flops += 2 * 2 * t * n * n * c              # q k^T and p v per frame
    self.act += 2 * (2 * t * n * c + t * n * n)      # (q, k, scores), (p, v, out)
    self.point(t, hw, c, c)
    self.res(t, hw, c, c)

  def cost(self, nbytes: int) -> Cost:
    return Cost(flops=self.flops, weights=self.weights * nbytes, act=self.act * nbytes)


def vae_encoder(v, frames: int, hw: tuple[int, int]) -> Cost:
  """Encoder + quant_conv of a steady chunk of `frames` pixel frames (a multiple of r) of
  size hw, `v` the VAE model config (`configs/vae.py` `model`)."""
  ops = _Ops()
  mult = list(v.dim_mult)
  dims = [v.base_dim * x for x in [1] + mult]
  t, h, w = frames, hw[0], hw[1]
  ops.causal3(t, (h, w), v.get("in_channels", 3), dims[0])
  for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
    for _ in range(v.num_res_blocks):
      ops.res(t, (h, w), cin, cout)
      cin = cout
    if i != len(mult) - 1:
      ops.conv(t, t, (h, w), (h // 2, w // 2), cout, cout, (1, 3, 3))
      h, w = h // 2, w // 2
      if v.temporal_downsample[i]:
        ops.conv(t + 1, t // 2, (h, w), (h, w), cout, cout, (3, 1, 1))
        t //= 2
  ops.mid(t, (h, w), dims[-1])
  ops.causal3(t, (h, w), dims[-1], 2 * v.z_dim)
  ops.point(t, (h, w), 2 * v.z_dim, 2 * v.z_dim)
  return ops.cost(DTYPE_BYTES[str(v.dtype)])


def vae_decoder(v, latent_frames: int, latent_hw: tuple[int, int]) -> Cost:
  """post_quant_conv + decoder of a steady chunk of `latent_frames` latents."""
  ops = _Ops()
  mult = list(v.dim_mult)
  dims = [(v.get("decoder_base_dim") or v.base_dim) * x for x in [mult[-1]] + mult[::-1]]
  up = list(v.temporal_downsample)[::-1]
  t, h, w = latent_frames, latent_hw[0], latent_hw[1]
  ops.point(t, (h, w), v.z_dim, v.z_dim)
  ops.causal3(t, (h, w), v.z_dim, dims[0])
  ops.mid(t, (h, w), dims[0])
  for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
    cin = cin // 2 if i > 0 else cin
    for a in [cin] + [cout] * v.num_res_blocks:
      ops.res(t, (h, w), a, cout)
    if i != len(mult) - 1:
      if up[i]:
        ops.conv(t + 2, t, (h, w), (h, w), cout, 2 * cout, (3, 1, 1))
        t *= 2
      h, w = 2 * h, 2 * w
      ops.conv(t, t, (h, w), (h, w), cout, cout // 2, (1, 3, 3))
  ops.causal3(t, (h, w), dims[-1], v.get("out_channels", 3))
  return ops.cost(DTYPE_BYTES[str(v.dtype)])


def vae_factors(v) -> tuple[int, int]:
  """(spatial, temporal) factors of a VAE config."""
  return 2 ** (len(v.dim_mult) - 1), 2 ** sum(bool(b) for b in v.temporal_downsample)


# ----------------------------------------------------------------------------- per frame

def per_frame(config, vae_cfg, height: int, width: int, opt: StudentOption, *,
              dtypes: Dtypes | None = None, accelerator: Accelerator = H100) -> dict:
  """Per generated frame of a steady chunk: DiT and VAE FLOPs, bytes, predicted frames/s.

  dtypes: of the DiT (default: the config's); the VAE runs at its own config dtype.
  Returns dict(frames_per_chunk, keys_per_query, kv_cache_mb, dit, vae_encode, vae_decode
  (Cost.as_dict() per frame), flops, bytes, seconds_per_chunk {dit, vae_encode,
  vae_decode}, predicted_fps, bound ('compute' | 'memory' for the DiT)).
  """
  s, r = vae_factors(vae_cfg)
  latent_hw = (height // s, width // s)
  k = opt.chunk_pairs
  frames = r * k
  dtypes = with_cache(dtypes or config_dtypes(config), opt)
  dit = dit_chunk(config, opt, latent_hw, dtypes=dtypes)
  enc, dec = vae_encoder(vae_cfg, frames, (height, width)), vae_decoder(vae_cfg, k, latent_hw)
  vae_dtype = str(vae_cfg.dtype)
  secs = {"dit": dit.seconds(accelerator, dtypes.act),
          "vae_encode": enc.seconds(accelerator, vae_dtype),
          "vae_decode": dec.seconds(accelerator, vae_dtype)}
  m = config.model
  t = 2 * k * tokens_per_frame(m, latent_hw)
  cache_bytes = dtypes.nbytes("cache")
  total = dit + enc + dec
  return {"option": opt.describe(), "frames_per_chunk": frames,
          "keys_per_query": t + opt.cache_chunks * t,   # own (+ chunk source) + cached
          "kv_cache_mb": 2 * m.num_layers * opt.cache_chunks * t * m.dim * cache_bytes / 2**20,
          "dit": (dit * (1 / frames)).as_dict(), "vae_encode": (enc * (1 / frames)).as_dict(),
          "vae_decode": (dec * (1 / frames)).as_dict(),
          "flops": total.flops / frames, "bytes": total.bytes / frames,
          "seconds_per_chunk": secs, "predicted_fps": frames / sum(secs.values()),
          "bound": ("compute" if dit.flops / accelerator.peak(dtypes.act)
                    >= dit.bytes / accelerator.bytes_per_s else "memory")}


def lever_options(config, dtypes: Dtypes | None = None) -> list[tuple[str, dict]]:
  """(label, `option` overrides) of the levers the table compares, the config first."""
  base = option(config)
  cache = base.cache_dtype or (dtypes or config_dtypes(config)).act
  n = base.steps
  rows = [("as configured", {})]
  if n > 1:
    rows.append((f"{n - 1} steps", {"steps": n - 1}))
  for sink, window in ((1, 1), (1, 4)):
    if (sink, window) != (base.sink_chunks, base.window_chunks):
      rows.append((f"window {window} + sink {sink}", {"sink_chunks": sink,
                                                      "window_chunks": window}))
  for name, short in (("float32", "f32"), ("bfloat16", "bf16")):
    if cache != name:
      rows.append((f"KV cache {short}", {"cache_dtype": name}))
  if not base.source_once:
    rows.append(("source_once", {"source_once": True}))
    if n > 1:
      rows.append((f"{n - 1} steps + source_once", {"steps": n - 1, "source_once": True}))
  return rows


def table(config, vae_cfg, height: int, width: int, *, dtypes: Dtypes | None = None,
          accelerator: Accelerator = H100) -> dict:
  """The cost-model table of `lever_options`: dict(accelerator, dtypes, size, rows)."""
  dtypes = dtypes or Dtypes()
  rows = []
  for label, over in lever_options(config, dtypes):
    row = per_frame(config, vae_cfg, height, width, option(config, **over), dtypes=dtypes,
                    accelerator=accelerator)
    rows.append({"label": label, **row})
  return {"accelerator": accelerator.name, "dtypes": dataclasses.asdict(dtypes),
          "vae_dtype": str(vae_cfg.dtype), "size": [height, width], "rows": rows}


def markdown(cost_table: dict, heading: str = "##") -> str:
  """The cost-model table as markdown (`realcam bench` output)."""
  d = cost_table["dtypes"]
  h, w = cost_table["size"]
  lines = [f"{heading} Cost model: per generated frame, predicted on {cost_table['accelerator']}",
           "", "| option | keys per query | KV cache MiB | DiT GFLOP/frame | VAE GFLOP/frame | "
           "MB/frame (weights / KV / act) | predicted frames/s (DiT / VAE s per chunk) | "
           "DiT bound |", "|---|---|---|---|---|---|---|---|"]
  for r in cost_table["rows"]:
    dit, enc, dec = r["dit"], r["vae_encode"], r["vae_decode"]
    kv = dit["kv_read"] + dit["kv_write"]
    act = dit["act"] + enc["act"] + dec["act"]
    wts = dit["weights"] + enc["weights"] + dec["weights"]
    sec = r["seconds_per_chunk"]
    lines.append(
        f"| {r['label']} | {r['keys_per_query']:,} | {r['kv_cache_mb']:.1f} | "
        f"{dit['flops'] / 1e9:,.2f} | {(enc['flops'] + dec['flops']) / 1e9:,.2f} | "
        f"{r['bytes'] / 1e6:,.1f} ({wts / 1e6:,.1f} / {kv / 1e6:,.1f} / {act / 1e6:,.1f}) | "
        f"{r['predicted_fps']:,.1f} ({sec['dit']:.4f} / "
        f"{sec['vae_encode'] + sec['vae_decode']:.4f}) | {r['bound']} |")
  lines += ["", f"{w}x{h} frames, steady chunks; DiT activations {d['act']}, weights "
            f"{d['weight']}, KV cache as the option says (else the activation dtype); VAE "
            f"{cost_table['vae_dtype']}. Analytic count (`realcam_jax/bench/cost.py`: "
            "matmul FLOPs checked against the jaxpr; bytes = weights read per pass + KV "
            "cache read / written + matmul activations, fused attention); predicted "
            "frames/s = each part at its roofline (max of FLOPs / peak and bytes / "
            "bandwidth), at peak: real kernels reach a fraction of it.", ""]
  return "\n".join(lines)
