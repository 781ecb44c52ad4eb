"""The resumable, process-sharded MultiCamVideo import (see `data/multicam.py` for the format).

  summary = run_import(src, out, settings, process_index=0, process_count=1, log=print)

Work folder `OUT/.import-<split>/`:
  chunk-000012.array_record   records of scenes [12 S, 13 S) (S = scenes_per_shard)
  chunk-000012.json           its summary: records, imported / skipped scenes (+ why),
                              captions (sha1 -> text); written last, so its presence
                              marks the chunk done
Finishing (process 0, once every chunk has its summary): the record files become the
TFDS shards `OUT/multicamvideo-<split>.array_record-XXXXX-of-YYYYY`, then
`captions.json`, `features.json` and `dataset_info.json` are written (the last one
makes OUT read as a dataset) and the work folder is removed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from typing import Callable

from realcam_jax.atomic import atomic_file
from realcam_jax.data import multicam as mc


@dataclasses.dataclass
class ImportSummary:
  scenes: int = 0
  imported: int = 0
  records: int = 0
  skipped: Counter = dataclasses.field(default_factory=Counter)
  pending_chunks: int = 0      # chunks of other processes not yet done
  finished: bool = False       # the dataset was written (never when no scene imported)
  seconds: float = 0.0

  def line(self) -> str:
    why = ", ".join(f"{n} {k}" for k, n in sorted(self.skipped.items()))
    text = (f"{self.imported} of {self.scenes} scenes imported ({self.records} records), "
            f"{sum(self.skipped.values())} skipped" + (f" ({why})" if why else ""))
    if self.pending_chunks:
      text += f"; waiting for {self.pending_chunks} chunk(s) of other processes"
    return text


def _work_dir(out: str, split: str) -> str:
  return os.path.join(out, f".import-{split}")


def _json_bytes(obj) -> Callable:
  return lambda f: f.write(json.dumps(obj, indent=1, sort_keys=True).encode())


def _check_settings(out: str, settings: mc.ImportSettings, src: str):
  """OUT/import_info.json records the settings of the first run; later runs must match."""
  path = os.path.join(out, mc.INFO_FILE)
  mine = dict(dataclasses.asdict(settings), source=os.path.abspath(src))
  if os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    runs = stored.get("splits", {})
    prev = runs.get(settings.split)
    same_shape = all(stored.get(k) == mine[k] for k in ("height", "width", "frames"))
    if prev is not None and prev != mine or not same_shape:
      raise mc.ImportError_(
          f"{out} holds an import with other settings ({path}: "
          f"{prev or {k: stored.get(k) for k in ('height', 'width', 'frames')}}); use another "
          "--out or the same arguments to resume")
    if prev is not None:
      return
    stored.setdefault("splits", {})[settings.split] = mine
  else:
    stored = dict(height=settings.height, width=settings.width, frames=settings.frames,
                  splits={settings.split: mine})
  atomic_file(path, _json_bytes(stored))


def _write_chunk(work: str, chunk: int, scenes, settings, captions, feats, log, progress):
  from array_record.python.array_record_module import ArrayRecordWriter
  name = os.path.join(work, f"chunk-{chunk:06d}")
  part = name + ".array_record.part"
  writer = ArrayRecordWriter(part, "group_size:1")
  summary = dict(records=0, imported=[], skipped={}, captions={})
  try:
    for scene in scenes:
      try:
        records = mc.load_scene(scene, settings, captions)
      except mc.SceneError as e:
        log(f"skipped scene {scene.rel}: {e}")
        summary["skipped"][scene.rel] = [e.kind, str(e)]
      else:
        for rec in records:
          writer.write(feats.serialize_example(rec))
          summary["captions"][rec["caption_sha1"].tobytes().hex()] = mc.decode_text(
              rec["caption"])
        summary["records"] += len(records)
        summary["imported"].append(scene.rel)
      if progress is not None:
        progress()
  except BaseException:
    writer.close()
    os.unlink(part)
    raise
  writer.close()
  os.replace(part, name + ".array_record")
  atomic_file(name + ".json", _json_bytes(summary))


def _finish(out: str, work: str, settings, num_chunks: int, feats) -> int:
  import tensorflow_datasets as tfds
  split = mc.SPLIT_NAMES[settings.split]
  summaries = []
  for c in range(num_chunks):
    with open(os.path.join(work, f"chunk-{c:06d}.json")) as f:
      summaries.append((c, json.load(f)))
  shards = [(c, s["records"]) for c, s in summaries if s["records"] > 0]
  template = tfds.core.ShardedFileTemplate(
      data_dir=out, template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
      dataset_name=mc.NAME, split=split, filetype_suffix="array_record")
  for i, (c, _) in enumerate(shards):
    os.replace(os.path.join(work, f"chunk-{c:06d}.array_record"),
               os.fspath(template.sharded_filepath(shard_index=i, num_shards=len(shards))))
  cap_path = os.path.join(out, mc.CAPTIONS_FILE)
  captions = {}
  if os.path.exists(cap_path):
    with open(cap_path) as f:
      captions = json.load(f)
  for _, s in summaries:
    captions.update(s["captions"])
  atomic_file(cap_path, _json_bytes(captions))
  splits = [tfds.core.SplitInfo(name=split, shard_lengths=[n for _, n in shards], num_bytes=0,
                                filename_template=template)]
  info_path = os.path.join(out, "dataset_info.json")
  if os.path.exists(info_path):   # another split imported earlier: keep it
    prev = tfds.builder_from_directory(out).info.splits
    splits += [prev[name] for name in prev if name != split]
    os.unlink(info_path)
  tfds.folder_dataset.write_metadata(
      data_dir=out, features=feats, split_infos=splits, filename_template=template.template,
      description="ReCamMaster MultiCamVideo imported by `realcam data import multicamvideo`",
      check_data=False)
  for c in range(num_chunks):
    os.unlink(os.path.join(work, f"chunk-{c:06d}.json"))
  os.rmdir(work)
  return sum(n for _, n in shards)


def run_import(src: str, out: str, settings: mc.ImportSettings, *, process_index: int = 0,
               process_count: int = 1, metadata: str | None = None, log: Callable = print,
               progress_factory: Callable | None = None) -> ImportSummary:
  """Imports this process' chunks of SRC/<split>; process 0 finishes the dataset when all
  chunks are done. `progress_factory(total)` returns a per-scene callback (tqdm)."""
  settings.validate()
  if not 0 <= process_index < process_count:
    raise mc.ImportError_(f"process_index={process_index} with process_count={process_count}: "
                          "expected 0 <= index < count")
  start = time.time()
  scenes = mc.find_scenes(src, settings.split)
  meta_path = metadata or next((p for p in (os.path.join(src, settings.split, "metadata.csv"),
                                            os.path.join(src, "metadata.csv"))
                                if os.path.isfile(p)), None)
  if meta_path is None:
    raise mc.ImportError_(f"no metadata.csv (captions) in {os.path.join(src, settings.split)} "
                          f"or {src}; pass --metadata")
  captions = mc.read_captions(meta_path)
  os.makedirs(out, exist_ok=True)
  split_name = mc.SPLIT_NAMES[settings.split]
  if os.path.exists(os.path.join(out, "dataset_info.json")):
    import tensorflow_datasets as tfds
    if split_name in tfds.builder_from_directory(out).info.splits:
      raise mc.ImportError_(f"{out} already holds the imported split {split_name!r}")
  _check_settings(out, settings, src)
  work = _work_dir(out, settings.split)
  os.makedirs(work, exist_ok=True)
  from realcam_jax.atomic import remove_partial
  for name in os.listdir(work):   # a killed run's half-written record file
    if name.endswith(".part"):
      os.unlink(os.path.join(work, name))
  remove_partial(work)
  per = settings.scenes_per_shard
  num_chunks = (len(scenes) + per - 1) // per
  done = lambda c: os.path.exists(os.path.join(work, f"chunk-{c:06d}.json"))
  mine = [c for c in range(num_chunks) if c % process_count == process_index and not done(c)]
  feats = mc.features(settings)
  progress = progress_factory(sum(len(scenes[c * per:(c + 1) * per]) for c in mine)
                              ) if progress_factory else None
  for c in mine:
    _write_chunk(work, c, scenes[c * per:(c + 1) * per], settings, captions, feats, log,
                 progress)
  summary = ImportSummary(scenes=len(scenes))
  for c in range(num_chunks):
    if not done(c):
      summary.pending_chunks += 1
      continue
    with open(os.path.join(work, f"chunk-{c:06d}.json")) as f:
      s = json.load(f)
    summary.imported += len(s["imported"])
    summary.records += s["records"]
    summary.skipped.update(kind for kind, _ in s["skipped"].values())
  if summary.pending_chunks == 0 and process_index == 0 and summary.records > 0:
    _finish(out, work, settings, num_chunks, feats)
    summary.finished = True
  summary.seconds = time.time() - start
  return summary


def open_imported(data_dir: str) -> dict:
  """split -> random-access records of an imported dataset (`tfds.builder_from_directory`)."""
  import tensorflow_datasets as tfds
  if not os.path.isfile(os.path.join(data_dir, "dataset_info.json")):
    pending = sorted(n for n in os.listdir(data_dir) if n.startswith(".import-")) \
        if os.path.isdir(data_dir) else []
    hint = (f" (an unfinished import is in {', '.join(pending)}: rerun the same `realcam data "
            "import` to finish it)" if pending else "")
    raise mc.ImportError_(f"no imported dataset at {data_dir}: dataset_info.json is "
                          f"missing{hint}")
  builder = tfds.builder_from_directory(data_dir)
  return {split: builder.as_data_source(split) for split in builder.info.splits}
