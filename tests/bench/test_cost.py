"""The cost model (realcam_jax/bench/cost.py) against the jaxpr and small cases by hand.

FLOPs: every dot_general / conv of the traced program (`bench/jaxpr_cost.py`) with the
while loop's trip count. Bytes: the model's unfused-attention variant, at f32, equals
the operand + result bytes of those ops (weights + activations + the cached keys), and
the KV write equals the cache's dynamic_update_slice bytes.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from realcam_jax.bench import cost, jaxpr_cost
from realcam_jax.config import get_config
from realcam_jax.models.blocks import KV
from realcam_jax.models.realcam import RealCamDiT
from realcam_jax.train import state as st

F32 = cost.Dtypes("float32", "float32", "float32")


def _hw(c):
  return (int(c.data.latent_height), int(c.data.latent_width))


def _student_jaxpr(c, cache_dtype=None):
  """(jaxpr of one `student.generate_chunk`, option, latent hw, the cache)."""
  from realcam_jax.inference import student as student_inf
  from realcam_jax.models import causal
  m = c.model
  graphdef, params = st.abstract_model(lambda r: RealCamDiT(m, rngs=r))
  hw, k = _hw(c), int(c.student.chunk_pairs)
  cache = causal.init_student_cache(c, 1, hw, dtype=cache_dtype)
  src = jnp.zeros((1, k) + hw + (m.in_channels,))
  cam = jnp.zeros((1, k, 12))
  sig = student_inf.student_sigmas(c)
  jaxpr = jax.make_jaxpr(lambda p, ca: student_inf.generate_chunk(
      graphdef, p, ca, src, cam, None, jax.random.key(0), sig))(params, cache)
  return jaxpr, cost.option(c), hw, cache


@pytest.mark.parametrize("name,overrides", [
    ("student:tiny,window", []),
    ("student:tiny,window", ["--config.student.timesteps=(1000.0, 500.0, 250.0)",
                             "--config.student.window_chunks=3"]),
    ("student:tiny", ["--config.model.source_skip=True"]),          # unlimited cache
    ("student:demo", []),
    ("student:demo,chunk1", ["--config.model.camera_encoding='none'"]),
])
def test_student_chunk_matches_the_jaxpr(name, overrides):
  c = get_config(name, overrides)
  jaxpr, opt, hw, cache = _student_jaxpr(c)
  t = 2 * opt.chunk_pairs * cost.tokens_per_frame(c.model, hw)
  assert cache.k.shape[2] == opt.cache_chunks * t          # the buffer the model reads
  got = jaxpr_cost.count(jaxpr, while_trips=opt.steps + 1)   # n denoising passes + commit
  want = cost.dit_chunk(c, opt, hw, dtypes=F32, fused_attention=False)
  assert got.flops == want.flops
  assert got.bytes == want.weights + want.act + want.kv_read
  assert got.written == want.kv_write
  # One pass of the loop body is one `dit_pass`; the passes are identical.
  (_, n, kw), (_, one, _) = cost.chunk_passes(c, opt, hw)
  assert (n, one) == (opt.steps, 1)
  body = jaxpr_cost.count(jaxpr, while_trips=1).flops - jaxpr_cost.count(
      jaxpr, while_trips=0).flops
  assert body == cost.dit_pass(c.model, latent_hw=hw, text_len=c.model.text_len, **kw).flops


def test_bf16_cache_halves_the_cache_bytes_and_keeps_the_flops():
  c = get_config("student:tiny,window")
  jaxpr, opt, hw, _ = _student_jaxpr(c, cache_dtype=jnp.bfloat16)
  half = dataclasses.replace(opt, cache_dtype="bfloat16")
  got = jaxpr_cost.count(jaxpr, while_trips=opt.steps + 1)
  f32, bf16 = (cost.dit_chunk(c, o, hw, dtypes=F32, fused_attention=False) for o in (opt, half))
  assert got.written == bf16.kv_write == f32.kv_write // 2        # the commit writes bf16
  assert bf16.kv_read == f32.kv_read // 2 and bf16.flops == f32.flops == got.flops


def _small_model():
  """A model small enough to count by hand: D 12, FFN 16, 2 heads of 6, 1 layer, text
  2 x 4, freq 4, 1 channel, patch 1x1x1, no camera, no source skip."""
  m = get_config("teacher:tiny").model
  m.update(dict(dim=12, ffn_dim=16, num_heads=2, num_layers=1, text_dim=4, text_len=2,
                freq_dim=4, in_channels=1, out_channels=1, patch_size=(1, 1, 1),
                camera_encoding="none", source_skip=False))
  return m


def test_a_small_pass_by_hand_and_by_the_jaxpr():
  m = _small_model()
  # 2 frames of 1x1 latents -> T = 2 queries; 3 cached keys -> S = 5 keys per query.
  c = cost.dit_pass(m, 2, (1, 1), 2, extra_keys=3, dtypes=F32)
  flops = (2 * 2 * 1 * 12                        # patch embedding 2 T Cp D
           + 2 * 2 * (4 * 12 + 144)              # text 2 Lt (Dt D + D^2)
           + 2 * 2 * (4 * 12 + 144 + 6 * 144)    # time 2 F' (freq D + D^2 + 6 D^2)
           + 8 * 2 * 144 + 4 * 2 * 5 * 12        # self-attention 8 T D^2 + 4 T S D
           + 4 * 2 * 144 + 4 * 2 * 144 + 4 * 2 * 2 * 12   # cross 4 T D^2 + 4 Lt D^2 + 4 T Lt D
           + 4 * 2 * 12 * 16                     # FFN 4 T D Fd
           + 2 * 2 * 12 * 1)                     # head 2 T D Cp
  assert c.flops == flops == 11904
  assert c.weights == 4 * (12 + (48 + 144) + (48 + 144 + 864) + (1152 + 384) + 12) == 11232
  assert c.kv_read == 4 * 2 * 3 * 12 == 288     # k and v of 3 cached slots, 1 layer
  act = (2 * (1 + 12) + 2 * (4 + 3 * 12) + (24 + 2)    # patch, text, head
         + 8 * 24 + 4 * 24 + (4 * 24 + 4 * 24) + (2 * 24 + 2 * 24) + (2 * 24 + 2 * 2 * 16))
  assert c.act == 4 * act + 4 * 2 * (4 + 10 * 12) == 3280 + 992   # + the f32 time embedding
  unfused = cost.dit_pass(m, 2, (1, 1), 2, extra_keys=3, dtypes=F32, fused_attention=False)
  assert unfused.act - c.act == 4 * 2 * 2 * 2 * (5 + 2)      # scores + probs, N T (S + Lt)
  # The same pass through the model's jaxpr (a RealCamDiT of this config, 1 pair = 2 frames).
  gd, params = st.abstract_model(lambda r: RealCamDiT(m, rngs=r))
  kv = KV(jnp.zeros((1, 1, 3, 2, 6)), jnp.zeros((1, 1, 3, 2, 6)))
  x = jnp.zeros((1, 1, 1, 1, 1))
  jaxpr = jax.make_jaxpr(lambda p: st.merge(gd, p)(x, x, jnp.zeros((1, 1)), None,
                                                   jnp.zeros((1, 2, 4)), extra_kv=kv))(params)
  got = jaxpr_cost.count(jaxpr)
  assert got.flops == flops and got.bytes == unfused.weights + unfused.act + unfused.kv_read


@pytest.mark.parametrize("encoding", ["pose12", "plucker"])
def test_camera_projection_is_counted(encoding):
  c = get_config("student:tiny", [f"--config.model.camera_encoding='{encoding}'"])
  m, hw = c.model, _hw(c)
  gd, params = st.abstract_model(lambda r: RealCamDiT(m, rngs=r))
  p = cost.tokens_per_frame(m, hw)
  cam = jnp.zeros((1, 2, 12)) if encoding == "pose12" else jnp.zeros((1, 2, p, 24))
  x = jnp.zeros((1, 2) + hw + (m.in_channels,))
  jaxpr = jax.make_jaxpr(lambda q: st.merge(gd, q)(x, x, jnp.zeros((1, 2)), cam))(params)
  want = cost.dit_pass(m, 4, hw, m.text_len, camera_frames=4, dtypes=F32, fused_attention=False)
  got = jaxpr_cost.count(jaxpr)
  assert got.flops == want.flops and got.bytes == want.weights + want.act


def test_source_once_passes():
  c = get_config("student:demo")
  hw = _hw(c)
  std, once = cost.option(c), cost.option(c, source_once=True)
  half = 3 * 16                                       # K P: one stream of a demo chunk
  cached = 3 * 2 * half                               # 1 sink + 2 window chunks
  assert cost.chunk_passes(c, once, hw) == [
      ("source", 1, dict(frames=3, embed_frames=6, extra_keys=cached, skip_frames=3)),
      ("denoise", 4, dict(frames=3, embed_frames=6, extra_keys=cached + half, camera_frames=3,
                          skip_frames=3)),
      ("commit", 1, dict(frames=3, embed_frames=6, extra_keys=cached + half, camera_frames=3,
                         skip_frames=3))]
  a, b = cost.dit_chunk(c, std, hw), cost.dit_chunk(c, once, hw)
  assert a.kv_write == b.kv_write and b.flops < 0.62 * a.flops
  # The field is read from the config.
  c2 = get_config("student:demo")
  c2.student.source_once = True
  assert cost.option(c2).source_once and not std.source_once


def test_source_once_passes_match_the_model_streams():
  """Against RealCamDiT(streams=...), the passes of the student's source_once."""
  c = get_config("student:demo")
  m, hw = c.model, _hw(c)
  gd, params = st.abstract_model(lambda r: RealCamDiT(m, rngs=r))
  opt = cost.option(c, source_once=True)
  passes = {name: kw for name, _, kw in cost.chunk_passes(c, opt, hw)}
  half = 3 * cost.tokens_per_frame(m, hw)
  shape = lambda s: (m.num_layers, 1, s, m.num_heads, m.dim // m.num_heads)  # noqa: E731
  cache = KV(jnp.zeros(shape(opt.cache_chunks * 2 * half)), jnp.zeros(shape(opt.cache_chunks
                                                                            * 2 * half)))
  src_kv = KV(jnp.zeros(shape(half)), jnp.zeros(shape(half)))
  x = jnp.zeros((1, 3) + hw + (m.in_channels,))

  def run(p, streams, extra, tgt, sig, cam):
    return st.merge(gd, p)(x, tgt, sig, cam, None, streams=streams, extra_kv=extra,
                           return_kv=True)
  jaxprs = {"source": jax.make_jaxpr(lambda p: run(p, "source", cache, None, None, None)),
            "denoise": jax.make_jaxpr(lambda p: run(p, "target", (src_kv, cache), x,
                                                    jnp.zeros((1, 3)), jnp.zeros((1, 3, 12))))}
  for name, make in jaxprs.items():
    got = jaxpr_cost.count(make(params))
    want = cost.dit_pass(m, latent_hw=hw, text_len=m.text_len, dtypes=F32,
                         fused_attention=False, **passes[name])
    assert (got.flops, got.bytes) == (want.flops, want.weights + want.act + want.kv_read), name


def _vae_jaxprs(name, hw_px, k, impl):
  from realcam_jax.models import vae as vae_lib
  v = get_config(name).model
  v.conv_impl = impl
  vae = vae_lib.create_vae(v, seed=0)
  gd, state = nnx.split(vae)
  s, r = cost.vae_factors(v)
  assert (s, r) == (vae.spatial_factor, vae.temporal_factor)
  enc = vae_lib.init_encode_cache(vae, 1, *hw_px).replace(started=True)   # a steady chunk
  dec = vae_lib.init_decode_cache(vae, 1, *hw_px).replace(started=True)
  x = jnp.zeros((1, r * k) + hw_px + (3,))
  z = jnp.zeros((1, k, hw_px[0] // s, hw_px[1] // s, v.z_dim))
  je = jax.make_jaxpr(lambda st_, c, x: vae_lib.encode_chunk(nnx.merge(gd, st_), c, x))(
      state, enc, x)
  jd = jax.make_jaxpr(lambda st_, c, z: vae_lib.decode_chunk(nnx.merge(gd, st_), c, z))(
      state, dec, z)
  return v, je, jd, (hw_px[0] // s, hw_px[1] // s)


@pytest.mark.parametrize("name,hw_px,k", [("vae:tiny", (16, 16), 3), ("vae:demo", (64, 64), 3),
                                          ("vae:demo4x", (32, 64), 1)])
def test_vae_chunk_matches_the_jaxpr(name, hw_px, k):
  v, je, jd, latent_hw = _vae_jaxprs(name, hw_px, k, "conv3d")
  s, r = cost.vae_factors(v)
  enc, dec = cost.vae_encoder(v, r * k, hw_px), cost.vae_decoder(v, k, latent_hw)
  ge, gd_ = jaxpr_cost.count(je), jaxpr_cost.count(jd)
  assert (ge.flops, ge.bytes) == (enc.flops, enc.weights + enc.act)
  assert (gd_.flops, gd_.bytes) == (dec.flops, dec.weights + dec.act)
  if name == "vae:tiny":      # XLA:CPU's taps form: the same FLOPs, more bytes
    _, te, td, _ = _vae_jaxprs(name, hw_px, k, "taps")
    assert jaxpr_cost.count(te).flops == enc.flops and jaxpr_cost.count(td).flops == dec.flops
    assert jaxpr_cost.count(te).bytes > ge.bytes


def test_a_small_vae_by_hand():
  v = ml_collections.ConfigDict(dict(base_dim=2, z_dim=1, dim_mult=(1, 1),
                                     num_res_blocks=1, temporal_downsample=(True,),
                                     dtype="float32"))
  # Encoder of 4 frames of 2x2: conv_in 3->2 (3x3x3), a resblock 2->2 (two 3x3x3),
  # downsample 2x2 stride 2 (3x3) then time 3x1x1 stride 2 (4 -> 2 frames of 1x1), mid
  # (two resblocks + attention over 1 pixel), conv_out 2->2, quant_conv 2->2.
  c3 = lambda t, hw, ci, co: 2 * t * hw * co * 27 * ci  # noqa: E731
  flops = (c3(4, 4, 3, 2) + 2 * c3(4, 4, 2, 2) + 2 * 4 * 1 * 2 * 9 * 2 + 2 * 2 * 1 * 2 * 3 * 2
           + 6 * c3(2, 1, 2, 2)                # stage 1's resblock + the mid's two
           + (2 * 2 * 6 * 2 + 2 * 2 * 2 * 1 * 1 * 2 + 2 * 2 * 2 * 2)   # qkv, q k / p v, proj
           + c3(2, 1, 2, 2) + 2 * 2 * 2 * 2)   # conv_out, quant_conv
  assert cost.vae_encoder(v, 4, (2, 2)).flops == flops == 15552
  from realcam_jax.models import vae as vae_lib
  vae = vae_lib.create_vae(v, seed=0)
  gd, state = nnx.split(vae)
  cache = vae_lib.init_encode_cache(vae, 1, 2, 2).replace(started=True)
  jaxpr = jax.make_jaxpr(lambda st_, c, x: vae_lib.encode_chunk(nnx.merge(gd, st_), c, x))(
      state, cache, jnp.zeros((1, 4, 2, 2, 3)))
  assert jaxpr_cost.count(jaxpr).flops == flops


def test_roofline_and_per_frame():
  c = cost.Cost(flops=10.0, weights=1.0, kv_read=2.0, kv_write=3.0, act=4.0)
  acc = cost.Accelerator("toy", {"bfloat16": 5.0, "float32": 1.0}, 20.0)
  assert c.bytes == 10.0 and c.seconds(acc) == 2.0 and c.seconds(acc, "float32") == 10.0
  assert cost.Cost(flops=1.0, act=100.0).seconds(acc) == 5.0          # memory-bound
  assert (c + c).flops == 20.0 and (2 * c).act == 8.0
  config = get_config("student:demo")
  vae = get_config("vae:demo").model
  row = cost.per_frame(config, vae, 64, 64, cost.option(config), dtypes=F32, accelerator=acc)
  hw = (8, 8)
  dit = cost.dit_chunk(config, cost.option(config), hw, dtypes=F32)
  enc, dec = cost.vae_encoder(vae, 12, (64, 64)), cost.vae_decoder(vae, 3, hw)
  assert row["frames_per_chunk"] == 12 and row["keys_per_query"] == 96 + 288
  assert row["flops"] == pytest.approx((dit.flops + enc.flops + dec.flops) / 12)
  assert row["predicted_fps"] == pytest.approx(
      12 / (dit.seconds(acc, "float32") + enc.seconds(acc, "float32")
            + dec.seconds(acc, "float32")))
  assert row["kv_cache_mb"] == pytest.approx(2.25)            # as `realcam bench` reports


def test_full_size_numbers():
  """The per-pass count quoted in docs/bench_stream.md: 89 TFLOP, 9,360 queries, 37,440 keys."""
  from realcam_jax.bench import stream
  c = stream.with_window(get_config("student:wan2_1_1_3b"))
  v = get_config("vae:wan2_1").model
  opt = cost.option(c)
  dit = cost.dit_chunk(c, opt, (60, 104))
  assert dit.flops / 5 == pytest.approx(89.0e12, rel=0.01)
  t = cost.table(c, v, 480, 832)
  rows = {r["label"]: r for r in t["rows"]}
  assert rows["as configured"]["keys_per_query"] == 37440
  assert rows["3 steps"]["flops"] < rows["as configured"]["flops"]
  assert rows["source_once"]["dit"]["flops"] < 0.62 * rows["as configured"]["dit"]["flops"]
  assert rows["KV cache f32"]["dit"]["kv_read"] == 2 * rows["as configured"]["dit"]["kv_read"]
  assert rows["window 1 + sink 1"]["keys_per_query"] == 28080
  md = cost.markdown(t)
  assert "| 3 steps + source_once |" in md and "989 TFLOP/s" in md
  assert all(np.isfinite(r["predicted_fps"]) and r["predicted_fps"] > 0 for r in t["rows"])


def test_jaxpr_counter_needs_the_trip_count():
  jaxpr = jax.make_jaxpr(lambda x: jax.lax.while_loop(lambda c: c[0] < 3,
                                                      lambda c: (c[0] + 1, c[1] @ c[1]),
                                                      (0, x)))(jnp.ones((2, 2)))
  with pytest.raises(ValueError, match="while_trips"):
    jaxpr_cost.count(jaxpr)
  assert jaxpr_cost.count(jaxpr, while_trips=3).flops == 3 * 2 * 8
  scan = jax.make_jaxpr(lambda x: jax.lax.scan(lambda c, _: (c @ c, None), x, None, length=4))
  assert jaxpr_cost.count(scan(jnp.ones((3, 3)))).flops == 4 * 2 * 27
