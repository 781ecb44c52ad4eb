"""umT5 tokenizer as Wan2.1 calls it: clean the prompt, pad / truncate to `text_len`.

Wan (`wan/modules/t5.py`, `HuggingfaceTokenizer('google/umt5-xxl', seq_len=512,
clean='whitespace')`): `basic_clean` (ftfy when installed, HTML unescape twice,
strip), collapse whitespace, then the transformers tokenizer with
`padding='max_length', truncation=True, add_special_tokens=True` (the EOS `</s>`
ends every prompt; the empty prompt is just EOS).

`load_tokenizer(path)` accepts
  - a folder of tokenizer files (`tokenizer.json`, `spiece.model`, ...; the google/umt5-xxl
    folder Wan ships, or a transformers `UMT5EncoderModel` folder): transformers'
    `AutoTokenizer` when transformers is installed, else its `spiece.model`;
  - a SentencePiece `.model` file: ids + EOS, padded with the pad id (umT5: pad 0, EOS 1).
"""

from __future__ import annotations

import html
import os
import re

import numpy as np


class TokenizerError(ValueError):
  """A tokenizer path that cannot be loaded."""


def clean_prompt(text: str, mode: str = "whitespace") -> str:
  """Wan's prompt cleaning (`whitespace` | `none`)."""
  if mode == "none":
    return text
  if mode != "whitespace":
    raise ValueError(f"unknown text.clean {mode!r}; expected 'whitespace' or 'none'")
  try:
    import ftfy  # optional, as Wan uses it
    text = ftfy.fix_text(text)
  except ImportError:
    pass
  text = html.unescape(html.unescape(text)).strip()
  return re.sub(r"\s+", " ", text).strip()


class Tokenizer:
  """`tok(texts) -> (ids int32[B, L], mask int32[B, L])` with L = `length`."""

  def __init__(self, encode, pad_id: int, eos_id: int, length: int, clean: str, source: str):
    self._encode, self.pad_id, self.eos_id = encode, pad_id, eos_id
    self.length, self.clean, self.source = int(length), clean, source

  def __call__(self, texts) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full((len(texts), self.length), self.pad_id, np.int32)
    mask = np.zeros((len(texts), self.length), np.int32)
    for i, text in enumerate(texts):
      row = list(self._encode(clean_prompt(text, self.clean)))[: self.length - 1] + [self.eos_id]
      ids[i, :len(row)] = row
      mask[i, :len(row)] = 1
    return ids, mask


def _sentencepiece(path: str, length: int, clean: str) -> Tokenizer:
  try:
    import sentencepiece as spm
  except ImportError:
    raise TokenizerError(f"reading the SentencePiece model {path} needs the `sentencepiece` "
                         "package: pip install sentencepiece") from None
  try:
    sp = spm.SentencePieceProcessor(model_file=path)
  except (OSError, RuntimeError) as e:
    raise TokenizerError(f"tokenizer {path} is not a SentencePiece model: {e}") from None
  pad = sp.pad_id() if sp.pad_id() >= 0 else 0
  return Tokenizer(sp.encode, pad, sp.eos_id(), length, clean, path)


def _transformers(path: str, length: int, clean: str) -> Tokenizer:
  from transformers import AutoTokenizer
  try:
    tok = AutoTokenizer.from_pretrained(path)
  except (OSError, ValueError) as e:
    raise TokenizerError(f"tokenizer folder {path} cannot be loaded by transformers: "
                         f"{str(e).splitlines()[0]}") from None
  if tok.eos_token_id is None:
    raise TokenizerError(f"tokenizer folder {path} has no EOS token; expected umT5's `</s>`")

  def encode(text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return ids
  return Tokenizer(encode, tok.pad_token_id or 0, tok.eos_token_id, length, clean, path)


def load_tokenizer(path: str, length: int, clean: str = "whitespace") -> Tokenizer:
  """Loads the tokenizer at `path` (a folder or a `.model` file; see module docstring)."""
  if not os.path.exists(path):
    raise TokenizerError(f"tokenizer {path} does not exist; pass the google/umt5-xxl folder "
                         "(tokenizer.json / spiece.model) or a SentencePiece .model file")
  if os.path.isfile(path):
    return _sentencepiece(path, length, clean)
  try:
    import transformers  # noqa: F401
    have_transformers = True
  except ImportError:
    have_transformers = False
  if have_transformers and any(os.path.exists(os.path.join(path, n)) for n in
                               ("tokenizer.json", "tokenizer_config.json")):
    return _transformers(path, length, clean)
  spiece = os.path.join(path, "spiece.model")
  if os.path.isfile(spiece):
    return _sentencepiece(spiece, length, clean)
  raise TokenizerError(f"tokenizer folder {path} has no spiece.model (and transformers is "
                       "not installed to read tokenizer.json); expected the google/umt5-xxl "
                       "tokenizer files")
