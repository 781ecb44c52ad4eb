"""`realcam eval` outputs: results.json, results.md and PNG plots, written atomically.

  DIR/results.json            everything `runner.run_eval` returns (non-finite numbers as
                              the strings "inf", "-inf", "nan")
  DIR/results.md              one table per length: rows = systems, columns = metrics
  DIR/psnr_per_frame_<L>.png  per-frame PSNR along the video of length L, one line per
                              system (mean over scenes)
  DIR/loop_closure.png        loop-closure error (static-region MAE) per system and length
                              (only when some length has loop pairs)
  DIR/frames_<L>.png          the first scene's frames at length L, one column per video
                              (source, each system, ground truth), FRAME_ROWS frames
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

# (key, column title, format) of the markdown table, in order.
COLUMNS = (
    ("psnr", "PSNR (dB)", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("psnr_static", "PSNR static (dB)", "{:.2f}"),
    ("ssim_static", "SSIM static", "{:.4f}"),
    ("flicker_ratio", "flicker (pred/gt)", "{:.3f}"),
    ("loop_mae", "loop-closure MAE", "{:.4f}"),
)
ADHERENCE_COLUMNS = (
    ("rot_err_deg", "RotErr (deg)", "{:.2f}"),
    ("trans_err_deg", "TransErr (deg)", "{:.2f}"),
)


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


def markdown(results: dict) -> str:
  """results.md: a header with the run's settings and one table per length."""
  st = results["settings"]
  lines = [
      "# realcam eval",
      "",
      f"split `{results['split']}`, {len(results['seeds'])} scene(s) (seeds "
      f"{results['seeds'][0]}..{results['seeds'][-1]}), {st['width']}x{st['height']} px at "
      f"{st['fps']:g} fps, target camera 0, noise seed {results['noise_seed']}.",
      "Means over scenes; static = the target's static region; flicker = mean frame-to-frame "
      "change of the generated video / that of the ground truth; loop-closure MAE over static "
      "pixels of frame pairs at the same target pose (— where the trajectory has none). "
      "Definitions: docs/metrics.md.",
      "",
      "| system | checkpoint | settings | generation time (s) |",
      "|---|---|---|---|",
  ]
  for name, s in results["systems"].items():
    info = ", ".join(f"{k}={v}" for k, v in s["info"].items()) or "—"
    ckpt = f"`{s['checkpoint']}`" if s["checkpoint"] else (
        "—" if name == "copy_source" else "random weights")
    lines.append(f"| {name} | {ckpt} | {info} | {s['seconds']:.1f} |")
  lines += _length_table(results)
  cols = COLUMNS + (ADHERENCE_COLUMNS if results.get("adherence") else ())
  for length, ln in results["lengths"].items():
    lines += ["", f"## {length}: {ln['frames']} frames ({ln['latent_frames']} latent)", "",
              "| system | " + " | ".join(c[1] for c in cols) + " |",
              "|---|" + "---:|" * len(cols)]
    for name, per in results["results"].items():
      r = per[length]
      lines.append(f"| {name} | " + " | ".join(format_metric(r[k], f) for k, _, f in cols) + " |")
    lines += _view_change_table(results, length)
  return "\n".join(lines) + "\n"


def _length_table(results: dict) -> list[str]:
  """PSNR per system at each open-path length, as a multiple of the training length
  (the length-generalisation summary); [] with fewer than two such lengths."""
  lengths = {n: v for n, v in results["lengths"].items() if n != "loop"}
  if len(lengths) < 2:
    return []
  from realcam_jax.eval.runner import pixel_frames
  st = results["settings"]
  t_frames = pixel_frames(st["short_latent_frames"], st["temporal_factor"])
  heads = [f"{n} ({v['frames'] / t_frames:.1f}x, {v['frames']} frames)"
           for n, v in lengths.items()]
  lines = ["", f"PSNR (dB) by video length (1x = the training length, {t_frames} frames):", "",
           "| system | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
  for name, per in results["results"].items():
    lines.append(f"| {name} | " + " | ".join(format_metric(per[n]["psnr"], "{:.2f}")
                                             for n in lengths) + " |")
  return lines


def _view_change_table(results: dict, length: str) -> list[str]:
  """PSNR by size of the camera change (source -> target rotation at frame 0)."""
  per = results["results"]
  buckets = []
  for name in per:
    for b, v in per[name][length].get("by_view_change", {}).items():
      if b not in buckets:
        buckets.append(b)
  if not buckets:
    return []
  lines = ["", "PSNR (dB) by camera change (source → target rotation at frame 0; scenes):", "",
           "| system | " + " | ".join(buckets) + " |", "|---|" + "---:|" * len(buckets)]
  for name in per:
    cells = per[name][length].get("by_view_change", {})
    lines.append(f"| {name} | " + " | ".join(
        format_metric(cells[b]["psnr"], "{:.2f}") + f" ({cells[b]['scenes']})"
        if b in cells else "—" for b in buckets) + " |")
  return lines


def _finite(values) -> np.ndarray:
  v = np.asarray(values, np.float64)
  return np.where(np.isfinite(v), v, np.nan)


def plot_per_frame_psnr(results: dict, length: str, path: str):
  """Per-frame PSNR along the `length` video, one line per system (mean over scenes)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
  for name, per in results["results"].items():
    y = _finite(per[length]["per_frame_psnr"])
    ax.plot(np.arange(len(y)), y, label=name, lw=1.5)
  ln = results["lengths"][length]
  ax.xaxis.get_major_locator().set_params(integer=True)
  ax.set(xlabel="frame", ylabel="PSNR (dB)",
         title=f"per-frame PSNR, {length} video ({ln['frames']} frames)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def has_loop_numbers(results: dict) -> bool:
  return any(not math.isnan(r["loop_mae"]) for per in results["results"].values()
             for r in per.values())


def plot_loop_closure(results: dict, path: str):
  """Loop-closure MAE per system (grouped bars per length; error bars = scene std)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  systems = list(results["results"])
  lengths = [n for n in results["lengths"]
             if any(not math.isnan(results["results"][s][n]["loop_mae"]) for s in systems)]
  fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
  width = 0.8 / max(len(lengths), 1)
  x = np.arange(len(systems))
  for j, length in enumerate(lengths):
    means, stds = [], []
    for s in systems:
      v = _finite([sc["loop_mae"] for sc in results["results"][s][length]["scenes"]])
      v = v[~np.isnan(v)]
      means.append(v.mean() if v.size else np.nan)
      stds.append(v.std() if v.size else 0.0)
    ax.bar(x + (j - (len(lengths) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
           label=length)
  ax.set_xticks(x, systems)
  ax.set(ylabel="static-region MAE (unit range)", title="loop-closure error (lower is better)")
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


def plot_frames(results: dict, videos: dict, length: str, path: str):
  """frames_<L>.png: the frame sheet with column titles and frame numbers."""
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
  ax.set_title(f"scene {results['seeds'][0]}, {length} video", fontsize=9, pad=18)
  fig.tight_layout()
  fig.savefig(path, format="png")   # path or a binary file
  plt.close(fig)


def write_report(results: dict, out_dir: str, *, overwrite: bool = False,
                 videos: dict | None = None) -> list[str]:
  """Writes results.json, results.md and the plots to `out_dir` atomically.

  `videos` (from `runner.run_eval(..., keep_videos=)`) adds one frames_<L>.png per length.

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
    for length in results["lengths"]:
      plot_per_frame_psnr(results, length, os.path.join(tmp, f"psnr_per_frame_{length}.png"))
    if has_loop_numbers(results):
      plot_loop_closure(results, os.path.join(tmp, "loop_closure.png"))
    for length, per in (videos or {}).items():
      plot_frames(results, per, length, os.path.join(tmp, f"frames_{length}.png"))
  return sorted(os.listdir(out_dir))
