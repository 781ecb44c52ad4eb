"""WanDiT == diffusers WanTransformer3DModel (converted weights, f32), plus its hooks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realcam_jax.ckpt import convert_common, dit_weights
from realcam_jax.config import get_config
from realcam_jax.models.attention import AttentionMask, frame_block_ids
from realcam_jax.models.blocks import KV
from realcam_jax.models.dit import WanDiT



def _reference_modules():
  """(torch, diffusers' transformer_wan module); skips the test when they are not installed."""
  return (pytest.importorskip("torch"),
          pytest.importorskip("diffusers.models.transformers.transformer_wan"))

B, F, HL, WL, LT = 2, 3, 6, 8, 5   # batch, latent frames, latent height/width, text tokens


def _diffusers_kwargs(m):
  return dict(patch_size=tuple(m.patch_size), num_attention_heads=m.num_heads,
              attention_head_dim=m.dim // m.num_heads, in_channels=m.in_channels,
              out_channels=m.out_channels, text_dim=m.text_dim, freq_dim=m.freq_dim,
              ffn_dim=m.ffn_dim, num_layers=m.num_layers, cross_attn_norm=m.cross_attn_norm,
              eps=m.eps, rope_max_seq_len=m.rope_max_seq_len)


@pytest.fixture(scope="module")
def tiny():
  cfg = get_config("dit:tiny").model
  torch, tw = _reference_modules()
  torch.manual_seed(0)
  ref = tw.WanTransformer3DModel(**_diffusers_kwargs(cfg)).eval()
  with torch.no_grad():   # diffusers zero-inits nothing, but perturb so every weight matters
    for p in ref.parameters():
      p.add_(0.1 * torch.randn_like(p))
  sd = {k: v.numpy() for k, v in ref.state_dict().items()}
  r = np.random.default_rng(0)
  inputs = dict(x=r.standard_normal((B, cfg.in_channels, F, HL, WL)).astype(np.float32),
                ctx=r.standard_normal((B, LT, cfg.text_dim)).astype(np.float32))
  return cfg, ref, sd, inputs


def _convert(cfg, flat, fmt):
  rename, source_name = dit_weights.rename_for(fmt)
  abstract = nnx.eval_shape(lambda: WanDiT(cfg, rngs=nnx.Rngs(0)))
  state = convert_common.convert_state(flat, rename, nnx.state(abstract), source="test",
                                       source_name=source_name)
  return nnx.merge(nnx.graphdef(abstract), state)


def _ours(model, x_ncfhw, t, ctx, **kw):
  out = model(jnp.asarray(x_ncfhw.transpose(0, 2, 3, 4, 1)), jnp.asarray(t), jnp.asarray(ctx), **kw)
  return np.asarray(out).transpose(0, 4, 1, 2, 3)


def _ref(ref, x, t, ctx):
  torch, _ = _reference_modules()
  with torch.no_grad():
    return ref(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(ctx),
               return_dict=False)[0].numpy()


def _rel(a, b):
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# Independent inverse of the Wan -> diffusers table (diffusers names -> original Wan names).
_TO_WAN = [("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
           ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
           ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
           ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
           ("condition_embedder.time_proj", "time_projection.1"),
           (".attn1.", ".self_attn."), (".attn2.", ".cross_attn."),
           (".to_q.", ".q."), (".to_k.", ".k."), (".to_v.", ".v."), (".to_out.0.", ".o."),
           (".norm2.", ".norm3."), (".ffn.net.0.proj.", ".ffn.0."), (".ffn.net.2.", ".ffn.2."),
           ("proj_out.", "head.head.")]


def _to_wan_key(k):
  if k == "scale_shift_table":
    return "head.modulation"
  if k.endswith(".scale_shift_table"):
    return k.replace(".scale_shift_table", ".modulation")
  for a, b in _TO_WAN:
    k = k.replace(a, b)
  return k


def test_parity_diffusers_layout(tiny):
  cfg, ref, sd, inp = tiny
  t = np.array([300.0, 871.5], np.float32)
  ours = _ours(_convert(cfg, sd, "diffusers"), inp["x"], t, inp["ctx"])
  assert _rel(ours, _ref(ref, inp["x"], t, inp["ctx"])) <= 1e-4


def test_parity_wan_layout(tiny):
  cfg, ref, sd, inp = tiny
  wan = {"model.diffusion_model." * (i % 2) + _to_wan_key(k): v
         for i, (k, v) in enumerate(sorted(sd.items()))}
  assert any(k.endswith("blocks.1.self_attn.q.weight") for k in wan)
  assert dit_weights.detect_format(wan) == "wan" and dit_weights.detect_format(sd) == "diffusers"
  t = np.array([10.0, 999.0], np.float32)
  ours = _ours(_convert(cfg, wan, "wan"), inp["x"], t, inp["ctx"])
  assert _rel(ours, _ref(ref, inp["x"], t, inp["ctx"])) <= 1e-4


def test_parity_per_frame_timesteps(tiny):
  """Our t[B, F] vs diffusers' per-token timesteps (Wan2.2 style) expanded per frame."""
  cfg, ref, sd, inp = tiny
  t = np.array([[0.0, 250.0, 900.0], [1000.0, 500.0, 5.0]], np.float32)
  tokens_per_frame = (HL // 2) * (WL // 2)
  t_tok = np.repeat(t, tokens_per_frame, axis=1)
  ours = _ours(_convert(cfg, sd, "diffusers"), inp["x"], t, inp["ctx"])
  assert _rel(ours, _ref(ref, inp["x"], t_tok, inp["ctx"])) <= 1e-4


def test_param_count_wan2_1_1_3b_matches_diffusers_without_weights():
  cfg = get_config("dit:wan2_1_1_3b").model
  abstract = nnx.state(nnx.eval_shape(lambda: WanDiT(cfg, rngs=nnx.Rngs(0))))
  ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract))
  torch, tw = _reference_modules()
  with torch.device("meta"):
    ref = tw.WanTransformer3DModel(**_diffusers_kwargs(cfg))
  assert ours == sum(p.numel() for p in ref.parameters())
  assert 1.3e9 < ours < 1.5e9


# ----------------------------------------------------------------------------- hooks

def _random_state(cfg, seed=0, keep_init=()):
  """(graphdef, state) with N(0, 0.2^2) parameters, except paths containing one of `keep_init`,
  which keep the model's own initial values (initialised under jit: eager init compiles op by
  op and is slow on CPU)."""
  abstract = nnx.eval_shape(lambda: WanDiT(cfg, rngs=nnx.Rngs(seed)))
  state = nnx.state(abstract)
  if keep_init:
    state = jax.jit(lambda: nnx.state(WanDiT(cfg, rngs=nnx.Rngs(seed))))()
  r = np.random.default_rng(seed)
  flat = [(p, v if any(s in p for s in keep_init) else v.replace(
      value=jnp.asarray(0.2 * r.standard_normal(v.get_value().shape), jnp.float32)))
          for p, v in nnx.to_flat_state(state)]
  return nnx.graphdef(abstract), nnx.from_flat_state(flat)


def _jit_apply(graphdef):
  """Jitted (state, x, t, ctx, **kw) -> model output (eager scans recompile every call)."""
  return jax.jit(lambda state, *a, **kw: nnx.merge(graphdef, state)(*a, **kw),
                 static_argnames=("return_kv",))


def _inputs(cfg, f, seed=0):
  r = np.random.default_rng(seed)
  return (jnp.asarray(r.standard_normal((1, f, 4, 4, cfg.in_channels)), jnp.float32),
          jnp.asarray(r.uniform(0, 1000, (1, f)), jnp.float32),
          jnp.asarray(r.standard_normal((1, 3, cfg.text_dim)), jnp.float32))


def test_block_cond_hook_is_a_noop_at_init_and_respects_mask():
  cfg = get_config("dit:tiny", ["--config.model.block_cond_dim=5"]).model
  graphdef, state = _random_state(cfg, keep_init=("cond_proj",))
  apply = _jit_apply(graphdef)
  x, t, ctx = _inputs(cfg, 3)
  cond = jnp.asarray(np.random.default_rng(3).standard_normal((1, 3, 1, 5)), jnp.float32)
  base = np.asarray(apply(state, x, t, ctx))
  ones = jnp.ones((1, 3))
  np.testing.assert_array_equal(
      np.asarray(apply(state, x, t, ctx, block_cond=cond, block_cond_mask=ones)), base)
  state["blocks"]["cond_proj"]["kernel"].set_value(
      jnp.ones_like(state["blocks"]["cond_proj"]["kernel"].get_value()))
  off = apply(state, x, t, ctx, block_cond=cond, block_cond_mask=jnp.zeros((1, 3)))
  np.testing.assert_allclose(np.asarray(off), base, atol=1e-6)
  on = apply(state, x, t, ctx, block_cond=cond, block_cond_mask=jnp.array([[0.0, 1.0, 0.0]]))
  assert not np.allclose(np.asarray(on)[:, 1], base[:, 1], atol=1e-3)
  with pytest.raises(ValueError, match="block_cond must be"):
    apply(state, x, t, ctx, block_cond=cond[..., :4])
  plain = nnx.state(nnx.eval_shape(lambda: WanDiT(get_config("dit:tiny").model,
                                                  rngs=nnx.Rngs(0))))
  assert not any("cond_proj" in "/".join(map(str, p)) for p, _ in nnx.to_flat_state(plain))


def test_extra_kv_reproduces_block_causal_forward():
  """Frames 0..1 first (returning their KV), then frames 2..3 against that KV ==
  one block-causal forward over frames 0..3 with blocks [0, 0, 1, 1]."""
  cfg = get_config("dit:tiny").model
  graphdef, state = _random_state(cfg)
  apply = _jit_apply(graphdef)
  x, t, ctx = _inputs(cfg, 4, seed=1)
  p = 4  # tokens per frame (4x4 latents, patch 2)
  blocks = frame_block_ids(np.array([0, 0, 1, 1]), p)
  full = np.asarray(apply(state, x, t, ctx, mask=AttentionMask.block_causal(blocks, blocks)))
  first, kv = apply(state, x[:, :2], t[:, :2], ctx, return_kv=True)
  assert kv.k.shape == (cfg.num_layers, 1, 2 * p, cfg.num_heads, cfg.dim // cfg.num_heads)
  pos = np.array([2, 3])
  second = apply(state, x[:, 2:], t[:, 2:], ctx, frame_pos=pos, extra_kv=kv)
  np.testing.assert_allclose(np.asarray(first), full[:, :2], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(second), full[:, 2:], rtol=1e-5, atol=1e-5)
  # A static cache buffer: 3 garbage slots + the real ones, masked by kv_valid (keys are
  # [current (2p) ; cache (3 + 2p)]).
  junk = jnp.full(kv.k.shape[:2] + (3,) + kv.k.shape[3:], 7.0)
  padded = KV(jnp.concatenate([junk, kv.k], 2), jnp.concatenate([junk, kv.v], 2))
  valid = np.array([[True] * (2 * p) + [False] * 3 + [True] * (2 * p)])
  masked = apply(state, x[:, 2:], t[:, 2:], ctx, frame_pos=pos, extra_kv=padded,
                 mask=AttentionMask.key_valid(valid))
  np.testing.assert_allclose(np.asarray(masked), full[:, 2:], rtol=1e-5, atol=1e-5)
  # The same buffer filled from the front (real slots, then junk): a key-prefix length.
  front = KV(jnp.concatenate([kv.k, junk], 2), jnp.concatenate([kv.v, junk], 2))
  prefix = apply(state, x[:, 2:], t[:, 2:], ctx, frame_pos=pos, extra_kv=front,
                 mask=AttentionMask.key_prefix(4 * p))
  np.testing.assert_allclose(np.asarray(prefix), full[:, 2:], rtol=1e-5, atol=1e-5)


def test_layer_loop_and_remat_keep_values_and_gradients():
  """Scanned layers without remat == a Python loop over layers with full remat (value and
  gradient); every remat policy traces."""
  cfg = get_config("dit:tiny").model
  graphdef, state = _random_state(cfg)
  x, t, ctx = _inputs(cfg, 2, seed=2)
  loss = lambda st, gd: jnp.sum(nnx.merge(gd, st)(x, t, ctx) ** 2)  # noqa: E731
  value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)

  def graphdef_for(*overrides):
    c = get_config("dit:tiny", list(overrides)).model
    return nnx.graphdef(nnx.eval_shape(lambda: WanDiT(c, rngs=nnx.Rngs(0))))

  l0, g0 = value_and_grad(state, graphdef)
  l1, g1 = value_and_grad(state, graphdef_for("--config.model.scan_layers=False",
                                              "--config.model.remat_policy='full'"))
  np.testing.assert_allclose(float(l1), float(l0), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
  for policy in ("dots_saveable", "dots_with_no_batch_dims_saveable"):
    jax.eval_shape(jax.grad(loss), state, graphdef_for(f"--config.model.remat_policy='{policy}'"))


def test_input_errors_are_clear():
  cfg = get_config("dit:tiny").model
  model = nnx.eval_shape(lambda: WanDiT(cfg, rngs=nnx.Rngs(0)))
  x, t, ctx = _inputs(cfg, 2)

  def call(*a, **kw):
    return jax.eval_shape(lambda st: nnx.merge(nnx.graphdef(model), st)(*a, **kw),
                          nnx.state(model))

  with pytest.raises(ValueError, match="channels-last"):
    call(x[..., :3], t, ctx)
  with pytest.raises(ValueError, match=r"timesteps t must be \[B=1, F=2\]"):
    call(x, t[:, :1], ctx)
  with pytest.raises(ValueError, match="context must be"):
    call(x, t, ctx[..., :3])
  with pytest.raises(ValueError, match="extra_kv.k has shape"):
    call(x, t, ctx, extra_kv=KV(jnp.zeros((1, 1, 4, 2, 16)), jnp.zeros((1, 1, 4, 2, 16))))
  with pytest.raises(ValueError, match="unknown remat_policy"):
    WanDiT(get_config("dit:tiny", ["--config.model.remat_policy='most'"]).model,
           rngs=nnx.Rngs(0))


def _dot_flops(jaxpr) -> int:
  """2 * MACs of every dot_general in a (closed) jaxpr, scan bodies times their length."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += 2 * int(np.prod(eqn.outvars[0].aval.shape)) * int(
          np.prod([lhs[i] for i in contract]))
    times = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
    for p in eqn.params.values():
      for sub in (p if isinstance(p, (tuple, list)) else [p]):
        inner = getattr(sub, "jaxpr", None)
        if inner is not None:
          total += times * _dot_flops(inner if hasattr(inner, "eqns") else inner.jaxpr)
  return total


@pytest.mark.parametrize("cache_len", [0, 8])
def test_flop_formula_counts_every_matmul(cache_len):
  from realcam_jax.models.flops import dit_flops, dit_params
  cfg = get_config("dit:tiny").model
  abstract = nnx.eval_shape(lambda: WanDiT(cfg, rngs=nnx.Rngs(0)))
  b, f, h, w, lt = 2, 3, 4, 6, 5
  x = jnp.zeros((b, f, h, w, cfg.in_channels))
  kv = None
  if cache_len:
    shape = (cfg.num_layers, b, cache_len, cfg.num_heads, cfg.dim // cfg.num_heads)
    kv = KV(jnp.zeros(shape), jnp.zeros(shape))
  jaxpr = jax.make_jaxpr(lambda st: nnx.merge(nnx.graphdef(abstract), st)(
      x, jnp.zeros((b, f)), jnp.zeros((b, lt, cfg.text_dim)), extra_kv=kv))(nnx.state(abstract))
  assert _dot_flops(jaxpr.jaxpr) == dit_flops(cfg, f, h, w, lt, batch=b, cache_len=cache_len)
  for name in ("dit:tiny", "dit:demo", "dit:wan2_1_1_3b"):
    c = get_config(name).model
    n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(
        nnx.state(nnx.eval_shape(lambda c=c: WanDiT(c, rngs=nnx.Rngs(0))))))
    assert dit_params(c) == n
