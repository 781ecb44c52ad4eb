"""Benchmark records: one JSON file per table of docs/benchmarks.md.

A record (`make_record`) is a flat dict:

  name      file stem under docs/results/ (e.g. "dit_demo")
  title     one line saying what was measured
  command   the exact command line that produced it
  machine   `machine()`: platform, CPU model/count or GPU name, memory, JAX version/backend
  date      ISO date-time of the measurement
  numbers   the raw results (JSON-able)
  table     the markdown table(s) shown in the doc
  notes     remarks (e.g. "the CPU was shared with a training job"), or None
  figures   optional: [{title, file}], images written beside the record (file relative to
            its folder; `realcam eval --results` adds its frame sheets), shown under the table

`write_record` writes it atomically as strict JSON; `launch/make_benchmarks_doc.py`
renders docs/benchmarks.md from every record (realcam_jax/bench/benchdoc.py).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys

from realcam_jax.atomic import atomic_file
from realcam_jax.bench import report

RECORD_KEYS = ("name", "title", "command", "machine", "date", "numbers", "table", "notes")
SHARED_CPU_NOTE = ("The 2-core CPU was shared with a long training job while this ran: "
                   "wall-clock timings are pessimistic and noisy.")
# Peak dense bf16 matmul throughput per chip (TFLOP/s), matched against `device_kind`.
# H100 SXM and H200 share the same tensor cores (989 TFLOP/s dense bf16).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0}
# Attention kernels to try, best first, per JAX backend (realcam_jax/models/attention.py).
BEST_ATTENTION = {"gpu": ("cudnn", "xla", "dot_product"), "tpu": ("xla", "dot_product"),
                  "cpu": ("dot_product",)}


def cpu_model() -> str | None:
  """The CPU's model name from /proc/cpuinfo (Linux), else `platform.processor()`."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or None


def machine() -> dict:
  """`report.machine()` plus the CPU model and the accelerators' names (`device_kind`)."""
  import jax
  m = report.machine()
  m["cpu_model"] = cpu_model()
  m["device_kinds"] = sorted({d.device_kind for d in jax.devices()})
  return m


def describe(m: dict) -> str:
  """One line for the doc: accelerator or CPU, memory, OS, JAX version and backend."""
  backend = m.get("backend", "?")
  cpus = f"{m.get('cpu_count', '?')} CPUs"
  if m.get("cpu_model"):
    cpus += f" ({m['cpu_model']})"
  mem = f", {m['memory_gb']:.0f} GB RAM" if m.get("memory_gb") else ""
  if backend != "cpu":
    kinds = ", ".join(m.get("device_kinds") or []) or "?"
    what = f"{len(m.get('devices', []))} x {kinds} ({backend}); host {cpus}{mem}"
  else:
    what = f"{cpus}{mem}, no accelerator"
  load = m.get("load_avg_1_5_15")
  load = f"; load average {', '.join(f'{x:.2f}' for x in load)}" if load else ""
  return (f"{what}; {m.get('platform', '?')}; JAX {m.get('jax', '?')} "
          f"(jaxlib {m.get('jaxlib', '?')}), backend `{backend}`{load}")


def now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def command_line(program: str, argv=None) -> str:
  """The command as typed: `program` + the arguments (sys.argv[1:] when None)."""
  return shlex.join([*shlex.split(program), *(sys.argv[1:] if argv is None else argv)])


def notes(text: str | None, shared_cpu: bool = False) -> str | None:
  """The record's notes: `text`, preceded by `SHARED_CPU_NOTE` if `shared_cpu`."""
  parts = ([SHARED_CPU_NOTE] if shared_cpu else []) + ([text] if text else [])
  return " ".join(parts) or None


def make_record(name: str, title: str, command: str, numbers: dict, table: str, *,
                notes: str | None = None, machine_info: dict | None = None,
                date: str | None = None) -> dict:
  """A record (see the module docstring); machine and date default to now, here."""
  return {"name": name, "title": title, "command": command,
          "machine": machine() if machine_info is None else machine_info,
          "date": now() if date is None else date, "numbers": numbers,
          "table": table.strip("\n"), "notes": notes or None}


def name_of(path: str) -> str:
  """docs/results/dit_demo.json -> dit_demo."""
  return os.path.splitext(os.path.basename(path))[0]


def write_record(path: str, record: dict) -> str:
  """Writes `record` as strict, sorted JSON at `path` (atomically); returns `path`."""
  missing = [k for k in RECORD_KEYS if k not in record]
  if missing:
    raise ValueError(f"record {path}: missing {', '.join(missing)}")
  text = json.dumps(report._finite(record), indent=1, sort_keys=True, allow_nan=False,
                    default=report._json_default) + "\n"
  atomic_file(path, lambda f: f.write(text.encode()))
  return path


def read_record(path: str) -> dict:
  """A record from `path`; ValueError if it lacks a field."""
  with open(path) as f:
    record = json.load(f)
  missing = [k for k in RECORD_KEYS if k not in record]
  if missing:
    raise ValueError(f"{path} is not a benchmark record: missing {', '.join(missing)}")
  return record


def load_records(folder: str) -> dict[str, dict]:
  """{name: record} of every *.json in `folder` (empty if it does not exist)."""
  if not os.path.isdir(folder):
    return {}
  return {name_of(f): read_record(os.path.join(folder, f))
          for f in sorted(os.listdir(folder)) if f.endswith(".json")}


def markdown_table(header: list[str], rows: list[list]) -> str:
  """A markdown table from a header and rows of cells (str() of each)."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def peak_flops(device_kind: str, dtype: str = "bfloat16") -> float | None:
  """Peak dense FLOP/s of one chip for `dtype` (bf16/fp16 only), None if unknown."""
  if dtype not in ("bfloat16", "float16"):
    return None
  for key, tflops in PEAK_BF16_TFLOPS.items():
    if key.lower() in device_kind.lower():
      return tflops * 1e12
  return None


def mfu(flops_per_s: float, device_kind: str, dtype: str = "bfloat16") -> float | None:
  """Model FLOP utilisation: achieved model FLOP/s / the chip's peak (None if unknown)."""
  peak = peak_flops(device_kind, dtype)
  return None if peak is None else flops_per_s / peak


def attention_candidates(requested: str | None, default: str, backend: str) -> list[str]:
  """Attention impls to try in order: `requested`, or `BEST_ATTENTION` for 'best', or the
  config's `default` when None."""
  if requested is None:
    return [default]
  if requested == "best":
    return list(BEST_ATTENTION.get(backend, ("dot_product",)))
  return [requested]


def require_backend(backend: str = "gpu") -> None:
  """Exits with status 2 and a clear message unless JAX's default backend is `backend`."""
  import jax
  have = jax.default_backend()
  if have != backend:
    print(f"error: this benchmark needs a {backend.upper()} but JAX's backend is {have!r} "
          f"(devices {jax.devices()}); on an NVIDIA machine install jax[cuda12] matching "
          f"jax {jax.__version__}", file=sys.stderr)
    raise SystemExit(2)
