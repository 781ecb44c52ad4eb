"""UMT5Encoder == transformers UMT5EncoderModel (tiny random config, f32), both weight
layouts, and the tokenizer against transformers' T5 tokenizer."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from realcam_jax.ckpt import umt5_weights
from realcam_jax.ckpt.convert_common import ConversionError
from realcam_jax.config import get_config
from realcam_jax.models.text.umt5 import relative_position_buckets

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def hf_config(t):
  return transformers.UMT5Config(
      vocab_size=t.vocab_size, d_model=t.dim, d_kv=t.head_dim, d_ff=t.ffn_dim,
      num_layers=t.num_layers, num_heads=t.num_heads,
      relative_attention_num_buckets=t.num_buckets,
      relative_attention_max_distance=t.max_distance, feed_forward_proj="gated-gelu",
      layer_norm_epsilon=t.eps, dropout_rate=0.0, pad_token_id=0, eos_token_id=1)


def make_reference(config, seed=0):
  """A tiny random UMT5EncoderModel (every weight, norms included, perturbed)."""
  torch.manual_seed(seed)
  ref = transformers.UMT5EncoderModel(hf_config(config.text)).eval()
  with torch.no_grad():
    for p in ref.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return ref


@pytest.fixture(scope="module")
def tiny():
  config = get_config("configs/text.py:tiny")
  ref = make_reference(config)
  r = np.random.default_rng(0)
  ids = r.integers(2, config.text.vocab_size, (2, config.text.text_len)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 9:] = 0           # a padded row
  ids[1, 9:] = 0
  with torch.no_grad():
    want = ref(input_ids=torch.tensor(ids, dtype=torch.long),
               attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
  return config, ref, ids, mask, want


def _ours(model, ids, mask):
  return np.asarray(model(jnp.asarray(ids), jnp.asarray(mask)))


def test_buckets_match_transformers(tiny):
  config, ref, *_ = tiny
  attn = ref.encoder.block[0].layer[0].SelfAttention
  for lq, lk in ((16, 16), (3, 300)):
    rel = torch.arange(lk)[None, :] - torch.arange(lq)[:, None]
    for buckets, dist in ((config.text.num_buckets, config.text.max_distance), (32, 128)):
      attn.relative_attention_num_buckets, attn.relative_attention_max_distance = buckets, dist
      np.testing.assert_array_equal(relative_position_buckets(lq, lk, buckets, dist),
                                    attn._relative_position_bucket(rel).numpy())
  attn.relative_attention_num_buckets = config.text.num_buckets
  attn.relative_attention_max_distance = config.text.max_distance


def test_transformers_layout_parity(tiny):
  config, ref, ids, mask, want = tiny
  flat = {k: v.numpy() for k, v in ref.state_dict().items()}
  assert "shared.weight" in flat and "encoder.embed_tokens.weight" in flat   # tied copy
  state = umt5_weights.convert(flat, config, "test")
  from flax import nnx
  from realcam_jax.models.text.umt5 import UMT5Encoder
  abstract = nnx.eval_shape(lambda: UMT5Encoder(config.text, rngs=nnx.Rngs(0)))
  model = nnx.merge(nnx.graphdef(abstract), state)
  got = _ours(model, ids, mask)
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)
  # Unscanned layers compute the same.
  config.text.scan_layers = False
  model2 = nnx.merge(nnx.graphdef(nnx.eval_shape(
      lambda: UMT5Encoder(config.text, rngs=nnx.Rngs(0)))), state)
  config.text.scan_layers = True
  np.testing.assert_allclose(_ours(model2, ids, mask), want, atol=2e-5, rtol=2e-5)


def test_folder_and_wan_pth_load(tiny, tmp_path):
  config, ref, ids, mask, want = tiny
  ref.save_pretrained(tmp_path / "hf")            # safetensors, tied weight stored once
  got = _ours(umt5_weights.load_encoder(str(tmp_path / "hf"), config), ids, mask)
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)
  # Wan's naming, bf16 like models_t5_umt5-xxl-enc-bf16.pth.
  wan = {}
  for k, v in ref.state_dict().items():
    name = umt5_weights.transformers_to_wan_key(k)
    wan.setdefault(name, v.to(torch.bfloat16))
  assert "blocks.1.ffn.gate.0.weight" in wan and "blocks.0.pos_embedding.embedding.weight" in wan
  torch.save(wan, tmp_path / "enc-bf16.pth")
  got = _ours(umt5_weights.load_encoder(str(tmp_path / "enc-bf16.pth"), config), ids, mask)
  np.testing.assert_allclose(got, want, atol=0.1, rtol=0.05)   # bf16-rounded weights
  assert not np.allclose(got, want, atol=1e-6)                  # ... really rounded


def test_bad_weights_name_the_key(tiny, tmp_path):
  config, ref, *_ = tiny
  flat = {umt5_weights.transformers_to_wan_key(k): v.numpy()
          for k, v in ref.state_dict().items()}
  del flat["blocks.1.attn.q.weight"]
  flat["blocks.0.norm1.weight"] = flat["blocks.0.norm1.weight"][:-1]
  with pytest.raises(ConversionError) as e:
    umt5_weights.convert(flat, config, "enc.pth")
  assert "blocks.1.attn.q.weight" in str(e.value) and "blocks.0.norm1.weight" in str(e.value)
  with pytest.raises(ConversionError, match="not a umT5 encoder"):
    umt5_weights.convert({"foo.weight": np.zeros(3)}, config, "x.pth")
  with pytest.raises(ConversionError, match="do not exist"):
    umt5_weights.load_weights(str(tmp_path / "missing.pth"))
  (tmp_path / "junk.pth").write_bytes(b"not a pickle")
  with pytest.raises(ConversionError, match="junk.pth"):
    umt5_weights.load_weights(str(tmp_path / "junk.pth"))


CORPUS = ["A man in a plaid suit jacket stands next to a white police car.",
          "The camera is stationary, capturing the scene from a medium shot.",
          "Several people in the background, some dressed in formal attire.",
          "A red cube rolls across a textured ground under a blue sky."] * 20


def train_sentencepiece(folder, vocab_size=64):
  """A tiny umT5-style SentencePiece model (pad 0, eos 1, unk 2) at folder/spiece.model."""
  spm = pytest.importorskip("sentencepiece")
  os.makedirs(folder, exist_ok=True)
  corpus = os.path.join(folder, "corpus.txt")
  with open(corpus, "w") as f:
    f.write("\n".join(CORPUS))
  spm.SentencePieceTrainer.train(
      input=corpus, model_prefix=os.path.join(folder, "spiece"), vocab_size=vocab_size,
      model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
      hard_vocab_limit=False)
  return os.path.join(folder, "spiece.model")


def test_tokenizer_matches_transformers(tmp_path):
  from realcam_jax.models.text.tokenizer import clean_prompt, load_tokenizer
  model = train_sentencepiece(str(tmp_path / "tok"))
  ours = load_tokenizer(model, length=12)                  # SentencePiece directly
  hf = transformers.T5Tokenizer.from_pretrained(str(tmp_path / "tok"))
  hf.save_pretrained(str(tmp_path / "hf_tok"))
  via_transformers = load_tokenizer(str(tmp_path / "hf_tok"), length=12)   # AutoTokenizer
  texts = ["A man  in a plaid\n suit &amp; tie.", "", "camera " * 20]
  ids, mask = ours(texts)
  want = hf([clean_prompt(t) for t in texts], padding="max_length", truncation=True,
            max_length=12, add_special_tokens=True)
  np.testing.assert_array_equal(ids, np.asarray(want["input_ids"]))
  np.testing.assert_array_equal(mask, np.asarray(want["attention_mask"]))
  for a, b in zip(via_transformers(texts), (ids, mask)):
    np.testing.assert_array_equal(a, b)
  assert len(set(ids[0].tolist())) > 4                    # real pieces, not all <unk>
  assert mask[1].sum() == 1 and ids[1, 0] == 1            # the empty prompt is just EOS
  assert clean_prompt(" a \t b &amp;amp; c ") == "a b & c"
