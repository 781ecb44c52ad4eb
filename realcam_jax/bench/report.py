"""Bench results -> bench.json, bench.md (tables) and latency_vs_length.png.

`results` (what `realcam bench` collects) is a JSON-able dict:
  command, date, machine (`machine()`), config, teacher_config, fps_target,
  systems: {name: `stream.bench_student(...)` or `offline.bench_offline(...)`},
and this module adds `speedup` and `targets`.
"""

from __future__ import annotations

import json
import math
import os
import platform

import numpy as np

from realcam_jax.atomic import atomic_file

FIRST_CHUNK_TARGET_S = 1.0
FLAT_TOLERANCE = 1.25      # "flat": latency at the longest length <= 1.25 x at 1x
STUDENT_SYSTEMS = ("student", "student_window")
OFFLINE_SYSTEMS = ("teacher", "prefix")


def machine() -> dict:
  """Where the numbers come from: platform, CPUs, memory, JAX version and backend, load."""
  import jax
  import jaxlib
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  try:
    import psutil
    mem_gb = psutil.virtual_memory().total / 2**30
  except ImportError:
    mem_gb = None
  return {"platform": platform.platform(), "processor": platform.processor() or None,
          "python": platform.python_version(), "cpu_count": os.cpu_count(),
          "cpus_usable": usable, "memory_gb": mem_gb, "jax": jax.__version__,
          "jaxlib": jaxlib.__version__, "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()], "load_avg_1_5_15": list(os.getloadavg())}


def _longest(system: dict) -> dict:
  return max(system["lengths"], key=lambda r: r["multiple"])


def _row(system: dict, multiple: int) -> dict | None:
  return next((r for r in system["lengths"] if r["multiple"] == multiple), None)


def speedup(systems: dict) -> dict | None:
  """Whole-video time of the prefix baseline / the streaming student at the shortest length."""
  from realcam_jax.bench.offline import whole_video_s
  stu = systems.get("student") or systems.get("student_window")
  base = systems.get("prefix")
  if stu is None or base is None:
    return None
  for row in sorted(base["lengths"], key=lambda r: r["multiple"]):
    s_row = _row(stu, row["multiple"])
    if s_row is not None:
      base_s, extrapolated = whole_video_s(row)
      stu_s = sum(s_row["chunk_latency_s"])
      return {"multiple": row["multiple"], "student_system": stu["system"],
              "student_video_s": stu_s, "prefix_video_s": base_s,
              "prefix_extrapolated": extrapolated, "ratio": base_s / stu_s}
  return None


def flatness(system: dict) -> dict:
  """How per-chunk latency grows: across lengths and along the longest stream."""
  rows = sorted(system["lengths"], key=lambda r: r["multiple"])
  across = rows[-1]["median_chunk_latency_s"] / rows[0]["median_chunk_latency_s"]
  lat = np.asarray(rows[-1]["chunk_latency_s"][1:])        # chunk 0: other shape
  q = max(1, len(lat) // 4)
  along = float(np.median(lat[-q:]) / np.median(lat[:q])) if len(lat) else float("nan")
  return {"across_lengths": across, "along_longest_stream": along,
          "from_multiple": rows[0]["multiple"], "to_multiple": rows[-1]["multiple"]}


def targets(systems: dict, fps_target: float) -> dict:
  """Pass/fail of the real-time targets for each student system."""
  out = {}
  for name in STUDENT_SYSTEMS:
    if name not in systems:
      continue
    rows = systems[name]["lengths"]
    fps = [r["steady_fps"] for r in rows if r["steady_fps"] is not None]
    first = [r["first_chunk_latency_s"] for r in rows]
    flat = flatness(systems[name])
    out[name] = {
        "min_steady_fps": min(fps) if fps else None,
        "steady_fps_ok": bool(fps) and min(fps) >= fps_target,
        "max_first_chunk_s": max(first),
        "first_chunk_ok": max(first) < FIRST_CHUNK_TARGET_S,
        "flatness": flat,
        "flat_ok": bool(max(flat["across_lengths"], flat["along_longest_stream"])
                        <= FLAT_TOLERANCE)}
  return out


def _f(x, spec=".3f"):
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "–"
  return format(x, spec)


def _yes(ok: bool) -> str:
  return "yes" if ok else "**no**"


def markdown(results: dict) -> str:
  """The human-readable report: machine, command, tables (`tables`), targets."""
  m = results["machine"]
  lines = [
      "# realcam bench: streaming student vs offline teacher / prefix baseline", "",
      f"- Command: `{results['command']}`",
      f"- Date: {results['date']}",
      f"- Machine: {m['platform']}; {m['cpu_count']} CPUs ({m['cpus_usable']} usable); "
      f"{_f(m['memory_gb'], '.0f')} GB RAM; load average at start "
      f"{', '.join(f'{x:.2f}' for x in m['load_avg_1_5_15'])}",
      f"- JAX {m['jax']} (jaxlib {m['jaxlib']}), backend `{m['backend']}`, devices "
      f"{', '.join(m['devices'])}",
      f"- Configs: student `{results['config']}`, teacher `{results['teacher_config']}`; "
      f"frame size {results['size'][1]}x{results['size'][0]}; "
      f"{results.get('weights', 'random weights (speed only)')}.",
      "- Times are wall clock (`time.perf_counter`), compile excluded unless labelled; "
      "1x = the student's training length.", ""]
  if results.get("note"):
    lines += [f"> {results['note']}", ""]
  return "\n".join(lines) + "\n" + tables(results, "##") + drift_table(results, "##")


def drift_table(results: dict, heading: str = "##") -> str:
  """Per-chunk output drift along each student stream (`bench/stream.py`: a looping scene,
  each chunk vs its first occurrence); '' when the results carry none."""
  stu = [results["systems"][n] for n in STUDENT_SYSTEMS if n in results["systems"]]
  rows = [(s, r) for s in stu for r in s["lengths"] if "drift_per_loop" in r]
  if not rows:
    return ""
  lines = [f"{heading} Streaming student: output drift along the stream", "",
           "| system | length | loop chunks | drift per loop (mean) | max | last chunk | "
           "position drift max |",
           "|---|---|---|---|---|---|---|"]
  for s, r in rows:
    loops = " ".join("—" if d is None else f"{d:.2e}" for d in r["drift_per_loop"])
    lines.append(f"| {s['system']} | {r['multiple']}x | {r['loop_chunks']} | {loops} | "
                 f"{_f(r['drift_max'], '.2e')} | {_f(r['drift_last'], '.2e')} | "
                 f"{_f(r.get('position_drift_max'), '.2e')} |")
  lines += ["", "The source is one synthetic scene playing in a loop of one training length, "
            "with the same noise and a still camera on every loop, so a chunk repeats an "
            "earlier one's inputs; drift = relative L2 difference of its target latents from "
            "its first occurrence; it includes the feedback of the generated window. Position "
            "drift: each chunk replayed from exactly its caches with the stream counter moved "
            "back to the first steady-state chunk of its loop phase (same inputs and visible "
            "history, another stream index); 0 up to rounding when positions are stationary "
            "(rolling window only).", ""]
  return "\n".join(lines) + "\n"


def tables(results: dict, heading: str = "##") -> str:
  """The result tables of `markdown` (sections under `heading`-level titles)."""
  lines = []
  stu = [results["systems"][n] for n in STUDENT_SYSTEMS if n in results["systems"]]
  if stu:
    lines += [f"{heading} Streaming student: per-chunk latency vs video length", "",
              "| system | cache | length | frames | chunks | first chunk s | median chunk s | "
              "max chunk s | steady frames/s | compile s (first / steady shape) | "
              "KV cache MiB | RSS MiB | peak RSS MiB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in stu:
      cache = (f"window {s['window_chunks']} + sink {s['sink_chunks']}" if s["window_chunks"]
               and s["system"] == "student_window" else "unlimited")
      for r in s["lengths"]:
        c = r["compile_s"]
        comp = "(compiled once)" if c is None else \
            f"{c['first_shape_s']:.1f} / {c['steady_shape_s']:.1f}"
        lines.append(
            f"| {s['system']} | {cache} | {r['multiple']}x | {r['frames']} | {r['chunks']} | "
            f"{_f(r['first_chunk_latency_s'])} | {_f(r['median_chunk_latency_s'])} | "
            f"{_f(max(r['chunk_latency_s'][1:] or r['chunk_latency_s']))} | "
            f"{_f(r['steady_fps'], '.1f')} | {comp} | {_f(r['kv_cache_mb'], '.2f')} | "
            f"{_f(r['rss_mb'], '.0f')} | {_f(r['peak_rss_mb'], '.0f')} |")
    lines += ["", f"Chunk = {stu[0]['chunk_pairs']} latent frame pairs = "
              f"{stu[0]['chunk_frames'][1]} frames ({stu[0]['chunk_frames'][0]} for the first "
              "chunk). Steady frames/s = frames of chunks 1.. / their time. Compile = the "
              "dummy warm-up chunk minus a measured run of that shape. Peak RSS is the "
              "process's peak so far (lengths run in increasing order).", ""]
  off = [results["systems"][n] for n in OFFLINE_SYSTEMS if n in results["systems"]]
  if off:
    lines += [f"{heading} Offline (whole video at once)", "",
              "| system | layout | steps | CFG | length | frames | compile s | whole video s | "
              "frames/s | measured step s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for s in off:
      for r in s["lengths"]:
        e = r["estimate"]
        if "skipped" in r:
          video, fps, comp = f"~{e['estimate_s']:.0f} (extrapolated, skipped)", "–", "–"
        else:
          video, fps, comp = _f(r["video_s"]), _f(r["fps"], ".2f"), _f(r["compile_s"], ".1f")
        lines.append(f"| {s['system']} | {s['layout']} | {s['steps']} | {s['cfg_scale']:g} | "
                     f"{r['multiple']}x | {r['frames']} | {comp} | {video} | {fps} | "
                     f"{_f(e['step_s'], '.4f')} |")
    skipped = [r["skipped"] for s in off for r in s["lengths"] if "skipped" in r]
    lines += [""] + [f"- {s}" for s in skipped] + ([""] if skipped else [])
  sp = results.get("speedup")
  if sp:
    lines += [f"{heading} Speed-up", "",
              f"At {sp['multiple']}x the streaming student ({sp['student_system']}) generates "
              f"the whole video in {sp['student_video_s']:.3f} s (sum of chunk latencies, "
              f"after compile); the prefix baseline takes {sp['prefix_video_s']:.2f} s"
              f"{' (extrapolated)' if sp['prefix_extrapolated'] else ''}: "
              f"**{sp['ratio']:.0f}x** faster.", ""]
  tg = results.get("targets")
  if tg:
    fps_t = results["fps_target"]
    lines += [f"{heading} Targets", "",
              f"| system | steady >= {fps_t:g} frames/s (min over lengths) | first chunk < "
              f"{FIRST_CHUNK_TARGET_S:g} s (max) | latency flat (<= {FLAT_TOLERANCE:g}x): "
              "across lengths / along the longest stream |",
              "|---|---|---|---|"]
    for name, t in tg.items():
      f = t["flatness"]
      lines.append(f"| {name} | {_yes(t['steady_fps_ok'])} ({_f(t['min_steady_fps'], '.1f')}) | "
                   f"{_yes(t['first_chunk_ok'])} ({_f(t['max_first_chunk_s'])} s) | "
                   f"{_yes(t['flat_ok'])} ({_f(f['across_lengths'], '.2f')}x from "
                   f"{f['from_multiple']}x to {f['to_multiple']}x / "
                   f"{_f(f['along_longest_stream'], '.2f')}x) |")
    lines.append("")
  if results.get("cost_model"):
    lines += [cost_markdown(results["cost_model"], heading), ""]
  return "\n".join(lines)


def cost_markdown(cost_table: dict, heading: str = "##") -> str:
  """The cost-model table (`bench/cost.py`) of a run."""
  from realcam_jax.bench import cost
  return cost.markdown(cost_table, heading)


def plot(results: dict, path: str):
  """latency_vs_length.png: per-chunk latency along the longest stream; median vs length."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
  for name in STUDENT_SYSTEMS:
    s = results["systems"].get(name)
    if s is None:
      continue
    r = _longest(s)
    x = np.arange(len(r["chunk_latency_s"])) / s["chunks_per_training_length"]
    a.plot(x, 1e3 * np.asarray(r["chunk_latency_s"]), ".-", label=f"{name} ({r['multiple']}x)")
    rows = sorted(s["lengths"], key=lambda q: q["multiple"])
    b.plot([q["multiple"] for q in rows], [1e3 * q["median_chunk_latency_s"] for q in rows],
           "o-", label=name)
  a.set_xlabel("position in the stream (x training length)")
  a.set_ylabel("chunk latency (ms)")
  a.set_title("per-chunk latency along the longest stream")
  b.set_xlabel("video length (x training length)")
  b.set_ylabel("median chunk latency (ms)")
  b.set_title("per-chunk latency vs video length")
  for ax in (a, b):
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[0]:
      ax.legend()
  fig.tight_layout()
  atomic_file(path, lambda f: fig.savefig(f, format="png", dpi=100))
  plt.close(fig)


def finish(results: dict) -> dict:
  """Adds `speedup` and `targets`."""
  results["speedup"] = speedup(results["systems"])
  results["targets"] = targets(results["systems"], results["fps_target"])
  return results


def write(results: dict, out_dir: str) -> dict:
  """Writes bench.json, bench.md and latency_vs_length.png into `out_dir` (atomically)."""
  paths = {name: os.path.join(out_dir, name)
           for name in ("bench.json", "bench.md", "latency_vs_length.png")}
  atomic_file(paths["bench.json"], lambda f: f.write(
      json.dumps(_finite(results), indent=2, allow_nan=False, default=_json_default).encode()))
  atomic_file(paths["bench.md"], lambda f: f.write(markdown(results).encode()))
  plot(results, paths["latency_vs_length.png"])
  return paths


def _finite(x):
  """A copy with non-finite floats as None (strict JSON)."""
  if isinstance(x, dict):
    return {k: _finite(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_finite(v) for v in x]
  if isinstance(x, (float, np.floating)) and not math.isfinite(x):
    return None
  return x


def _json_default(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.bool_):
    return bool(x)
  raise TypeError(f"not JSON serialisable: {type(x).__name__}")
