"""`realcam text encode`: embeddings == transformers' UMT5EncoderModel trimmed to the tokens
(Wan), once per unique caption, zero-padded when read; resumable; bad inputs."""

import json
import os

import numpy as np
import pytest

import fake_text
from realcam_jax.cli import main
from realcam_jax.config import get_config
from realcam_jax.data import text_store
from realcam_jax.data.multicam import caption_key

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

CAPTIONS = ["A man in a plaid suit jacket.", "The camera is stationary.", "a red cube " * 9]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("umt5"))
  model = fake_text.make_encoder_folder(folder, get_config("configs/text.py:tiny").text)
  return folder, model


def test_encode_matches_transformers(encoder, tmp_path, capsys):
  folder, model = encoder
  caps = tmp_path / "captions.txt"
  caps.write_text("\n".join(CAPTIONS + CAPTIONS[:1]))      # a duplicate: stored once
  out = str(tmp_path / "text")
  code = main(["text", "encode", "--config", "configs/text.py:tiny", "--weights", folder,
               "--captions", str(caps), "--out", out, "--config.store_dtype=float32"])
  assert code == 0, capsys.readouterr().err
  store = text_store.TextStore(out)
  assert store.meta["count"] == 4 and (store.text_len, store.text_dim) == (16, 16)
  from realcam_jax.models.text.tokenizer import load_tokenizer
  tok = load_tokenizer(os.path.join(folder, "spiece.model"), 16)
  for text in CAPTIONS + [""]:
    ids, mask = tok([text])
    with torch.no_grad():
      want = model(input_ids=torch.tensor(ids, dtype=torch.long),
                   attention_mask=torch.tensor(mask)).last_hidden_state.numpy()[0]
    n = int(mask.sum())
    got = store.embedding(caption_key(text))
    np.testing.assert_allclose(got[:n], want[:n], atol=3e-5, rtol=3e-5)
    assert np.all(got[n:] == 0)                           # Wan: zero padding past the tokens
  assert 1 < int(tok([CAPTIONS[2]])[1].sum()) == 16       # truncated to text_len
  np.testing.assert_array_equal(store.empty(), store.embedding(caption_key("")))


def test_resume_and_errors(encoder, tmp_path):
  folder, _ = encoder
  from realcam_jax.ckpt import umt5_weights
  from realcam_jax.models.text.tokenizer import load_tokenizer
  config = get_config("configs/text.py:tiny")
  tok = load_tokenizer(folder, 16)
  enc = umt5_weights.load_encoder(folder, config)
  calls = []

  def encode(ids, mask):
    calls.append(len(ids))
    if len(calls) == 3:
      raise KeyboardInterrupt
    return np.asarray(enc(ids, mask))

  caps = {caption_key(t): t for t in CAPTIONS + ["x", "y"]}
  caps[caption_key("")] = ""
  out = str(tmp_path / "text")
  with pytest.raises(KeyboardInterrupt):
    text_store.encode_captions(caps, encode, tok, out, batch_size=2, captions_per_part=2)
  with pytest.raises(text_store.TextStoreError, match="unfinished encode"):
    text_store.TextStore(out)
  calls.clear()
  text_store.encode_captions(caps, lambda i, m: np.asarray(enc(i, m)), tok, out, batch_size=2,
                             captions_per_part=2)
  store = text_store.TextStore(out)
  assert store.meta["count"] == 6 and not os.path.exists(out + ".partial")
  with pytest.raises(text_store.TextStoreError, match="no embedding for caption"):
    store.embedding(caption_key("never seen"))
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps({"0" * 40: "text"}))
  with pytest.raises(text_store.TextStoreError, match="not the sha1"):
    text_store.read_captions(str(bad))
  assert main(["text", "encode", "--config", "configs/text.py:tiny", "--weights",
               str(tmp_path / "missing"), "--captions", str(bad), "--out", out]) == 2
