"""Caption embeddings, stored once per unique caption and looked up by the records.

  realcam text encode --config configs/text.py:umt5_xxl --weights ENC --tokenizer TOK \
      --captions DATA --out TEXT

On disk (`TEXT/`):
  meta.json            text_len, text_dim, dtype, count, the empty prompt's key, encoder
  index.json           caption sha1 hex -> [part, first row, tokens]
  part-00000.npy ...   rows of token embeddings [tokens, D] (bfloat16 stored as its uint16
                       bits, or float32), each caption's `mask.sum()` tokens back to back
Like Wan, only a caption's own tokens are kept; reading pads them with zeros to
`text_len` (Wan's DiT pads the encoder output the same way). The empty prompt ""
is always stored: CFG's unconditional branch uses its embedding.

Encoding is resumable: parts are written into `TEXT.partial/` one batch-group at a time
(part file, then its key list), a rerun skips finished parts, and the folder is renamed
to `TEXT` when every caption is done.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Mapping

import ml_dtypes
import numpy as np

from realcam_jax.atomic import atomic_file
from realcam_jax.data.multicam import caption_key

META, INDEX = "meta.json", "index.json"
EMPTY_PROMPT = ""


class TextStoreError(ValueError):
  """A text store that is missing, incomplete or lacks a caption."""


def read_captions(path: str) -> dict[str, str]:
  """sha1 -> caption from an imported dataset folder (its captions.json) or a .json / .txt
  file (one caption per line); the empty prompt is added."""
  file = os.path.join(path, "captions.json") if os.path.isdir(path) else path
  if not os.path.isfile(file):
    raise TextStoreError(f"no captions at {path}: expected an imported dataset folder with "
                         "captions.json, a captions .json (sha1 -> text) or a .txt file")
  try:
    with open(file, encoding="utf-8") as f:
      if file.endswith(".json"):
        caps = json.load(f)
        if not isinstance(caps, dict):
          raise ValueError("expected an object sha1 -> caption")
      else:
        caps = {caption_key(line.rstrip("\n")): line.rstrip("\n") for line in f}
  except (OSError, ValueError) as e:
    raise TextStoreError(f"captions file {file} cannot be read: {e}") from None
  for key, text in caps.items():
    if caption_key(text) != key:
      raise TextStoreError(f"captions file {file}: key {key} is not the sha1 of its caption "
                           f"{text[:40]!r}")
  caps[caption_key(EMPTY_PROMPT)] = EMPTY_PROMPT
  return caps


def _to_store(x: np.ndarray, dtype: str) -> np.ndarray:
  if dtype == "bfloat16":
    return x.astype(ml_dtypes.bfloat16).view(np.uint16)
  if dtype == "float32":
    return x.astype(np.float32)
  raise TextStoreError(f"store_dtype={dtype!r}: expected 'bfloat16' or 'float32'")


def encode_captions(captions: Mapping[str, str], encode: Callable, tokenizer, out_dir: str, *,
                    batch_size: int, store_dtype: str = "bfloat16", captions_per_part: int = 4096,
                    meta: Mapping | None = None, progress: Callable | None = None) -> str:
  """Encodes every caption into the store `out_dir` (resumable, see module docstring).

  Args:
    captions: sha1 -> text.
    encode: (ids int32[B, L], mask int32[B, L]) -> f32[B, L, D]; B = batch_size always.
    tokenizer: `models.text.tokenizer.Tokenizer` (L = its length).
    progress: called with the number of captions after each batch.
  """
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(os.path.join(out_dir, META)):
    raise TextStoreError(f"{out_dir} already holds a text store; delete it to re-encode")
  work = out_dir + ".partial"
  os.makedirs(work, exist_ok=True)
  keys = sorted(captions)
  per = max(batch_size, captions_per_part // batch_size * batch_size)
  index, dim = {}, None
  for p, start in enumerate(range(0, len(keys), per)):
    part_keys = keys[start:start + per]
    done = os.path.join(work, f"part-{p:05d}.json")
    if os.path.exists(done):
      with open(done) as f:
        info = json.load(f)
      if info["keys"] != part_keys:
        raise TextStoreError(f"{work} was started with other captions; delete it")
    else:
      rows, lengths = [], []
      for b in range(0, len(part_keys), batch_size):
        chunk = [captions[k] for k in part_keys[b:b + batch_size]]
        ids, mask = tokenizer(chunk + [EMPTY_PROMPT] * (batch_size - len(chunk)))
        out = np.asarray(encode(ids, mask))
        for i in range(len(chunk)):
          n = int(mask[i].sum())
          rows.append(_to_store(out[i, :n], store_dtype))
          lengths.append(n)
        if progress is not None:
          progress(len(chunk))
      arr = np.concatenate(rows)
      atomic_file(os.path.join(work, f"part-{p:05d}.npy"), lambda f, a=arr: np.save(f, a))
      info = dict(keys=part_keys, lengths=lengths, dim=int(arr.shape[1]))
      atomic_file(done, lambda f, i=info: f.write(json.dumps(i).encode()))
    dim, offset = info["dim"], 0
    for k, n in zip(info["keys"], info["lengths"]):
      index[k] = [p, offset, n]
      offset += n
  atomic_file(os.path.join(work, INDEX), lambda f: f.write(json.dumps(index).encode()))
  info = dict(meta or {}, text_len=tokenizer.length, text_dim=dim, dtype=store_dtype,
              count=len(keys), empty_key=caption_key(EMPTY_PROMPT))
  atomic_file(os.path.join(work, META), lambda f: f.write(json.dumps(info, indent=2).encode()))
  for name in os.listdir(work):
    if name.startswith("part-") and name.endswith(".json"):
      os.unlink(os.path.join(work, name))
  os.rename(work, out_dir)
  return out_dir


class TextStore:
  """Reads a store: `store.embedding(key)` / `store.empty()` -> f32[text_len, D]."""

  def __init__(self, root: str):
    path = os.path.join(root, META)
    if not os.path.isfile(path):
      hint = (" (an unfinished encode is in " + root + ".partial: rerun `realcam text encode`)"
              if os.path.isdir(root + ".partial") else "")
      raise TextStoreError(f"no text store at {root}: {META} is missing{hint}; create it with "
                           "`realcam text encode`")
    with open(path) as f:
      self.meta = json.load(f)
    with open(os.path.join(root, INDEX)) as f:
      self.index = json.load(f)
    self.root = root
    self.text_len, self.text_dim = int(self.meta["text_len"]), int(self.meta["text_dim"])
    self._parts: dict[int, np.ndarray] = {}

  def __contains__(self, key: str) -> bool:
    return key in self.index

  def embedding(self, key: str) -> np.ndarray:
    if key not in self.index:
      raise TextStoreError(f"text store {self.root} has no embedding for caption {key}; "
                           "encode the captions of this dataset with `realcam text encode`")
    part, start, n = self.index[key]
    if part not in self._parts:
      self._parts[part] = np.load(os.path.join(self.root, f"part-{part:05d}.npy"), mmap_mode="r")
    rows = np.asarray(self._parts[part][start:start + n])
    if self.meta["dtype"] == "bfloat16":
      rows = rows.view(ml_dtypes.bfloat16)
    out = np.zeros((self.text_len, self.text_dim), np.float32)
    out[:n] = rows.astype(np.float32)
    return out

  def empty(self) -> np.ndarray:
    return self.embedding(self.meta["empty_key"])


class WithText:
  """A record source whose records gain `text_embedding` f32[Lt, Dt] (from `caption_sha1`)."""

  def __init__(self, source, store: TextStore, text_len: int, text_dim: int):
    if (store.text_len, store.text_dim) != (text_len, text_dim):
      raise TextStoreError(f"text store {store.root} holds [{store.text_len}, {store.text_dim}] "
                           f"embeddings; the model wants [{text_len}, {text_dim}] "
                           "(model.text_len, model.text_dim)")
    self.source, self.store = source, store

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    rec = dict(self.source[i])
    if "caption_sha1" not in rec:
      raise TextStoreError("the records carry no caption_sha1; data.text_dir needs an imported "
                           "dataset (realcam data import) encoded with realcam data encode")
    rec["text_embedding"] = self.store.embedding(np.asarray(rec["caption_sha1"], np.uint8)
                                                 .tobytes().hex())
    return rec
