"""Benchmark records from the outputs other commands already write.

  from_stream_bench  `realcam bench`'s bench.json (realcam_jax/bench/report.py)
  from_eval          `realcam eval`'s results.json (realcam_jax/eval/report.py)
  from_vae_meta      the VAE export's meta.json (realcam_jax/train/vae.py `export`)

`realcam bench --results` / `realcam eval --results` call the first two directly;
`launch/record_results.py` converts files written earlier.
"""

from __future__ import annotations

import datetime
import os
import re

from realcam_jax.bench import record

VAE_COMMAND = ("python launch/train_vae.py --config configs/vae.py:demo --workdir runs/vae_demo "
               "--export checkpoints/vae_demo")


def demote_headings(text: str, level: int = 4) -> str:
  """Drops a leading level-1 title and moves the other headings to `level`."""
  lines = text.strip("\n").splitlines()
  if lines and lines[0].startswith("# "):
    lines = lines[1:]
  out = [re.sub(r"^#{1,6} ", "#" * level + " ", ln) for ln in lines]
  return "\n".join(out).strip("\n")


def from_stream_bench(results: dict, name: str, *, notes: str | None = None) -> dict:
  """A record of one `realcam bench` run (its machine, date and command are kept)."""
  from realcam_jax.bench import report
  h, w = results["size"]
  systems = ", ".join(results["systems"])
  title = (f"streaming speed, student `{results['config']}` at {w}x{h} ({systems}); "
           "random weights")
  machine_info = dict(results["machine"])
  machine_info.setdefault("cpu_model", None)
  machine_info.setdefault("device_kinds", [])
  return record.make_record(name, title, results["command"], results,
                            report.tables(results, "####"),
                            notes=notes if notes is not None else results.get("note"),
                            machine_info=machine_info, date=results["date"])


def from_eval(results: dict, name: str, *, machine_info: dict | None = None,
              date: str | None = None, notes: str | None = None) -> dict:
  """A record of one `realcam eval` run (machine and date: here and now unless given)."""
  from realcam_jax.eval import report
  systems = ", ".join(results["systems"])
  title = (f"evaluation on {len(results['seeds'])} held-out `{results['split']}` scene(s): "
           f"{systems}")
  return record.make_record(name, title, results.get("command") or "realcam eval",
                            report.to_jsonable(results),
                            demote_headings(report.markdown(results)), notes=notes,
                            machine_info=machine_info, date=date)


def from_vae_meta(meta: dict, name: str, *, command: str = VAE_COMMAND,
                  date: str | None = None, notes: str | None = None,
                  machine_info: dict | None = None) -> dict:
  """A record of the VAE export report (PSNR, encode / decode frames/s)."""
  table = record.markdown_table(
      ["trained steps", "held-out clips", "PSNR (mean / min)", "encode, whole clip",
       "decode, whole clip"],
      [[meta.get("trained_steps", meta.get("step", "?")), meta.get("num_clips", "?"),
        f"{meta['psnr_db']:.2f} / {meta['psnr_db_min']:.2f} dB",
        f"{meta['encode_fps']:.1f} frames/s", f"{meta['decode_fps']:.1f} frames/s"]])
  return record.make_record(name, "demo VAE: reconstruction PSNR and encode / decode speed",
                            command, meta, table, notes=notes, machine_info=machine_info,
                            date=date)


def file_date(path: str) -> str:
  """The modification time of `path` as an ISO date-time (when the file was written)."""
  t = datetime.datetime.fromtimestamp(os.path.getmtime(path)).astimezone()
  return t.isoformat(timespec="seconds")
