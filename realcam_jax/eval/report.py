"""`realcam eval` outputs: results.json, results.md and PNG plots, written atomically.

  DIR/results.json            everything `runner.run_eval` returns (non-finite numbers as
                              the strings "inf", "-inf", "nan")
  DIR/results.md              per case and length one table: rows = systems and
                              references, cells = mean [95% bootstrap interval]
  DIR/psnr_per_frame_<C>_<L>.png  per-frame PSNR along the clip / loop videos of length L,
                              one line per row (mean over scenes)
  DIR/loop_closure.png        revisit PSNR on the static region of the true loops, per row
                              and length (only when the loop case ran)
  DIR/frames_<C>_<L>.png      the first scene's frames of case C at length L, one column per
                              video (source, each system, ground truth), FRAME_ROWS frames
                              spread over the video (when the run kept its videos)

`write_report` writes into a temporary sibling of DIR and renames it into place, so DIR
never holds a partial report.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from realcam_jax.atomic import atomic_dir
from realcam_jax.eval.summary import BASELINE_SYSTEMS

# (key, column title, format) of the markdown tables, in order.
COLUMNS = (
    ("psnr", "PSNR", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("psnr_static", "PSNR static", "{:.2f}"),
    ("ssim_static", "SSIM static", "{:.3f}"),
    ("psnr_object", "PSNR object", "{:.2f}"),
    ("ssim_object", "SSIM object", "{:.3f}"),
    ("sharpness", "sharpness", "{:.3f}"),
    ("sharpness_object", "sharpness object", "{:.3f}"),
    ("flicker_ratio", "flicker (pred/gt)", "{:.2f}"),
)
LOOP_COLUMNS = (
    ("revisit_psnr_static", "revisit PSNR static", "{:.2f}"),
    ("revisit_psnr", "revisit PSNR", "{:.2f}"),
    ("revisit_mae_static", "revisit MAE static", "{:.4f}"),
    ("consistency_mae", "visit/revisit MAE (self)", "{:.4f}"),
)
ADHERENCE_COLUMNS = (
    ("rot_err_deg", "RotErr (deg)", "{:.2f}"),
    ("trans_err_deg", "TransErr (deg)", "{:.2f}"),
)
BEAT_TITLES = {"psnr": "PSNR", "psnr_object": "object PSNR", "ssim_object": "object SSIM",
               "revisit_psnr_static": "revisit PSNR static"}
CASE_ORDER = ("identity", "presets", "clip", "loop")
PLOT_CASES = ("clip", "loop")   # per-frame PSNR plots


FRAME_ROWS = 5        # frames per column of frames_<L>.png
FRAME_MIN_SIZE = 128  # frames are enlarged (nearest neighbour) to at least this height


class ReportError(ValueError):
  """The output directory cannot be written as asked."""


def to_jsonable(x):
  """Numpy values -> plain Python; non-finite floats -> "inf" / "-inf" / "nan"."""
  if isinstance(x, dict):
    return {str(k): to_jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [to_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return to_jsonable(x.tolist())
  if isinstance(x, (np.bool_, bool)):
    return bool(x)
  if isinstance(x, (np.integer, int)):
    return int(x)
  if isinstance(x, (np.floating, float)):
    x = float(x)
    return x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))
  return x


def format_metric(value, fmt: str) -> str:
  """`fmt` of a metric; "—" for a missing or NaN one, "inf" / "-inf" for infinite ones."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "—"
  if isinstance(value, float) and math.isinf(value):
    return "inf" if value > 0 else "-inf"
  return fmt.format(value)


def format_ci(agg: dict, key: str, fmt: str) -> str:
  """`mean [lo, hi]` of a metric of an aggregate ("—" where undefined)."""
  mean = agg.get(key)
  if mean is None or (isinstance(mean, float) and math.isnan(mean)):
    return "—"
  lo, hi = (agg.get("ci") or {}).get(key, (None, None))
  cell = format_metric(mean, fmt)
  if lo is None or (isinstance(lo, float) and math.isnan(lo)) or lo == hi:
    return cell
  return f"{cell} [{format_metric(lo, fmt)}, {format_metric(hi, fmt)}]"


def _case_order(results: dict) -> list[str]:
  """Cases in table order: identity, the presets (their mean when there are several,
  each in its own table only when there is one), clip, loop."""
  names = list(results["cases"])
  out = [c for c in CASE_ORDER if c in names]
  if "presets" not in names:
    out[1 if "identity" in out else 0:0] = [c for c in names if c not in CASE_ORDER]
  return out


def _beats_cell(agg: dict) -> str:
  won = agg.get("beats")
  if won is None:
    return "(reference)"
  parts = [f"{BEAT_TITLES[m]}: {', '.join(v) if v else '—'}" for m, v in won.items()
           if not (m == "revisit_psnr_static" and math.isnan(agg.get(m, math.nan)))]
  return "; ".join(parts)


def _has(results: dict, case: str, key: str) -> bool:
  return any(not math.isnan(per[case][n][key]) for per in results["results"].values()
             for n in per[case])


def _case_table(results: dict, case: str, length: str) -> list[str]:
  cols = list(COLUMNS)
  if _has(results, case, "revisit_psnr_static"):
    cols += LOOP_COLUMNS
  if results.get("adherence"):
    cols += ADHERENCE_COLUMNS
  ln = results["lengths"][length]
  speed = results["cases"][case]["speed"]
  lines = ["", f"### {case}, {length} ({ln['factor']:g}x): {ln['frames']} frames "
               f"({ln['latent_frames']} latent); camera speed: {speed}", "",
           "| row | " + " | ".join(c[1] for c in cols) + " | beats (paired 95% CI > 0) |",
           "|---|" + "---:|" * len(cols) + "---|"]
  for name, per in results["results"].items():
    r = per[case][length]
    lines.append(f"| {name} | " + " | ".join(format_ci(r, k, f) for k, _, f in cols)
                 + f" | {_beats_cell(r)} |")
  return lines


def markdown(results: dict) -> str:
  """results.md: the run's settings, then per case and length a table of every row."""
  st = results["settings"]
  boot = results.get("bootstrap", {})
  lines = [
      "# realcam eval",
      "",
      f"split `{results['split']}`, {len(results['seeds'])} scene(s) (seeds "
      f"{results['seeds'][0]}..{results['seeds'][-1]}), {st['width']}x{st['height']} px at "
      f"{st['fps']:g} fps, noise seed {results['noise_seed']}.",
      "Each cell: mean over scenes [95% bootstrap interval, "
      f"{boot.get('samples', '?')} resamples of the scenes]. PSNR in dB, capped at 100 per "
      "frame. static / object = the truth's static region / the pixels that see an object "
      "(dilated 2 px); sharpness = high-frequency energy of the video / the truth's (1 = as "
      "sharp); flicker = frame-to-frame change / the truth's; revisit = the frames of a true "
      "loop at a pose seen before, against the truth; visit/revisit MAE (self) compares the "
      "video with itself (a frozen video scores 0). A system beats a reference when the "
      "paired interval of its per-scene difference is above 0. Definitions: "
      "docs/metrics.md.",
      "",
      "| row | checkpoint | settings | generation time (s) |",
      "|---|---|---|---|",
  ]
  for name, s in results["systems"].items():
    info = ", ".join(f"{k}={v}" for k, v in s["info"].items()) or "—"
    ckpt = f"`{s['checkpoint']}`" if s["checkpoint"] else (
        "—" if name in BASELINE_SYSTEMS else "random weights")
    lines.append(f"| {name} | {ckpt} | {info} | {s['seconds']:.1f} |")
  for name, s in results.get("references", {}).items():
    lines.append(f"| {name} | — | reference from the truth | {s['seconds']:.1f} |")
  lines += ["", "| case | camera speed |", "|---|---|"]
  lines += [f"| {c} | {v['speed']} |" for c, v in results["cases"].items()]
  for case in _case_order(results):
    lines += ["", f"## {case}"]
    lines += _length_table(results, case)
    for length in results["lengths"]:
      lines += _case_table(results, case, length)
      if case in ("clip", "loop"):
        lines += _view_change_table(results, case, length)
  lines += _preset_table(results)
  return "\n".join(lines) + "\n"


def _length_table(results: dict, case: str) -> list[str]:
  """Object-region PSNR of every row at each length (length generalisation at a fixed
  camera speed); [] with fewer than two lengths."""
  lengths = results["lengths"]
  if len(lengths) < 2:
    return []
  heads = [f"{n} ({v['factor']:g}x, {v['frames']} frames)" for n, v in lengths.items()]
  lines = ["", f"Object-region PSNR (dB) by video length, {case} (1x = the training length):",
           "", "| row | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
  for name, per in results["results"].items():
    lines.append(f"| {name} | " + " | ".join(format_ci(per[case][n], "psnr_object", "{:.2f}")
                                             for n in lengths) + " |")
  return lines


def _preset_table(results: dict) -> list[str]:
  """Object-region PSNR per single preset at each row, first length; [] without presets."""
  singles = [c for c in results["cases"] if c not in CASE_ORDER]
  if len(singles) < 2:
    return []
  length = next(iter(results["lengths"]))
  lines = ["", f"## each preset from the source pose: object-region PSNR (dB), {length}", "",
           "| row | " + " | ".join(singles) + " |", "|---|" + "---:|" * len(singles)]
  for name, per in results["results"].items():
    lines.append(f"| {name} | " + " | ".join(format_metric(per[c][length]["psnr_object"],
                                                           "{:.2f}") for c in singles) + " |")
  return lines


def _view_change_table(results: dict, case: str, length: str) -> list[str]:
  """PSNR by size of the camera change (source -> target rotation at frame 0)."""
  per = results["results"]
  buckets = []
  for name in per:
    for b in per[name][case][length].get("by_view_change", {}):
      if b not in buckets:
        buckets.append(b)
  if not buckets:
    return []
  lines = ["", "PSNR / object PSNR (dB) by camera change (source → target rotation at "
               "frame 0; scenes):", "",
           "| row | " + " | ".join(buckets) + " |", "|---|" + "---:|" * len(buckets)]
  for name in per:
    cells = per[name][case][length].get("by_view_change", {})
    lines.append(f"| {name} | " + " | ".join(
        format_metric(cells[b]["psnr"], "{:.2f}") + " / "
        + format_metric(cells[b]["psnr_object"], "{:.2f}") + f" ({cells[b]['scenes']})"
        if b in cells else "—" for b in buckets) + " |")
  return lines


def _finite(values) -> np.ndarray:
  v = np.asarray(values, np.float64)
  return np.where(np.isfinite(v), v, np.nan)


def plot_per_frame_psnr(results: dict, case: str, length: str, path: str):
  """Per-frame PSNR along the video, one line per row (mean over scenes)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
  for name, per in results["results"].items():
    y = _finite(per[case][length]["per_frame_psnr"])
    ax.plot(np.arange(len(y)), y, label=name, lw=1.5)
  ln = results["lengths"][length]
  ax.xaxis.get_major_locator().set_params(integer=True)
  ax.set(xlabel="frame", ylabel="PSNR (dB)",
         title=f"per-frame PSNR, {case}, {length} video ({ln['frames']} frames)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def has_loop_numbers(results: dict) -> bool:
  return "loop" in results["cases"] and _has(results, "loop", "revisit_psnr_static")


def plot_loop_closure(results: dict, path: str):
  """Revisit PSNR on the static region against the truth, per row and length (error
  bars: the 95% bootstrap interval)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = list(results["results"])
  lengths = list(results["lengths"])
  fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
  width = 0.8 / max(len(lengths), 1)
  x = np.arange(len(rows))
  for j, length in enumerate(lengths):
    aggs = [results["results"][r]["loop"][length] for r in rows]
    mean = _finite([a["revisit_psnr_static"] for a in aggs])
    ci = np.array([_finite(a["ci"]["revisit_psnr_static"]) for a in aggs])
    err = np.nan_to_num(np.abs(ci.T - mean))
    ax.bar(x + (j - (len(lengths) - 1) / 2) * width, mean, width, yerr=err, capsize=2,
           label=length)
  ax.set_xticks(x, rows, fontsize=7, rotation=20)
  ax.set(ylabel="revisit PSNR, static (dB)",
         title="true loops: revisit frames against the truth (higher is better)")
  ax.grid(alpha=0.3, axis="y")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def check_out_dir(out_dir: str, overwrite: bool = False):
  """Raises ReportError unless `out_dir` may receive a report (missing, empty, or overwrite)."""
  if os.path.exists(out_dir):
    if not os.path.isdir(out_dir):
      raise ReportError(f"--out {out_dir} exists and is not a directory")
    if os.listdir(out_dir) and not overwrite:
      raise ReportError(f"--out {out_dir} exists and is not empty; pass --overwrite to replace it")


def frame_sheet(videos: dict, rows: int = FRAME_ROWS) -> tuple[np.ndarray, list[int]]:
  """A grid of frames: one column per video (in `videos` order), `rows` frames spread
  evenly over the video (first and last included). Returns (u8[R*H', C*W', 3], the
  frame indices), each frame enlarged by an integer factor to at least FRAME_MIN_SIZE
  pixels high."""
  names = list(videos)
  shapes = {videos[n].shape for n in names}
  if len(shapes) != 1:
    raise ValueError("frame_sheet: videos differ in shape: "
                     + ", ".join(f"{n} {videos[n].shape}" for n in names))
  t, h = videos[names[0]].shape[:2]
  idx = sorted({int(round(x)) for x in np.linspace(0, t - 1, min(rows, t))})
  grid = np.concatenate([np.concatenate([np.asarray(videos[n][k], np.uint8) for n in names], 1)
                         for k in idx], 0)
  zoom = max(1, -(-FRAME_MIN_SIZE // h))
  return grid.repeat(zoom, 0).repeat(zoom, 1), idx


def plot_frames(results: dict, videos: dict, title: str, path: str):
  """frames_<case>_<L>.png: the frame sheet with column titles and frame numbers."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = list(videos)
  grid, idx = frame_sheet(videos)
  rows, cols = len(idx), len(names)
  fig, ax = plt.subplots(figsize=(1.6 * cols + 0.6, 1.6 * rows + 0.6), dpi=100)
  ax.imshow(grid, interpolation="nearest")
  ch, cw = grid.shape[0] / rows, grid.shape[1] / cols
  ax.set_xticks([(j + 0.5) * cw for j in range(cols)], names, fontsize=8)
  ax.set_yticks([(i + 0.5) * ch for i in range(rows)], [f"frame {k}" for k in idx], fontsize=8)
  ax.xaxis.tick_top()
  ax.tick_params(length=0)
  ax.set_title(f"scene {results['seeds'][0]}, {title}", fontsize=9, pad=18)
  fig.tight_layout()
  fig.savefig(path, format="png")   # path or a binary file
  plt.close(fig)


def frames_file(key: str) -> str:
  """frames_<case>_<length>.png for a kept video's key "case/length"."""
  return "frames_" + key.replace("/", "_") + ".png"


def write_report(results: dict, out_dir: str, *, overwrite: bool = False,
                 videos: dict | None = None) -> list[str]:
  """Writes results.json, results.md and the plots to `out_dir` atomically.

  `videos` (from `runner.run_eval(..., keep_videos=)`) adds one frames_<case>_<L>.png per
  kept video.

  Returns:
    the file names written (relative to `out_dir`).
  """
  out_dir = os.path.abspath(out_dir)
  check_out_dir(out_dir, overwrite)
  with atomic_dir(out_dir) as tmp:
    with open(os.path.join(tmp, "results.json"), "w") as f:
      json.dump(to_jsonable(results), f, indent=2)
    with open(os.path.join(tmp, "results.md"), "w") as f:
      f.write(markdown(results))
    for case in (c for c in PLOT_CASES if c in results["cases"]):
      for length in results["lengths"]:
        plot_per_frame_psnr(results, case, length,
                            os.path.join(tmp, f"psnr_per_frame_{case}_{length}.png"))
    if has_loop_numbers(results):
      plot_loop_closure(results, os.path.join(tmp, "loop_closure.png"))
    for key, per in (videos or {}).items():
      plot_frames(results, per, f"{key} video", os.path.join(tmp, frames_file(key)))
  return sorted(os.listdir(out_dir))
