"""`realcam demo`: the main job with no arguments, on a held-out synthetic scene.

Loads the bundled demo checkpoints (`checkpoints/student_demo`, `checkpoints/vae_demo`
under the repository root), renders test-split scene `--scene` (never trained on) with
the ground-truth video of the target camera path (`realcam_jax.data.heldout`), compiles
the streaming step on a dummy chunk (timed as compile), streams the novel view chunk by
chunk through a `StreamingSession`, and writes into `--out`:

  demo.mp4     source | generated | ground truth, side by side (3x the width)
  frames.npz   the raw uint8 frames: source, generated, ground_truth; target_poses
  report.json  sizes, compile time, first-chunk latency (compile excluded), per-chunk
               latencies, steady frames/s, PSNR / SSIM vs the ground truth

Every file appears complete or not at all (written to a temporary name, then renamed).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import types

from realcam_jax.atomic import atomic_file
from realcam_jax.cli import UserError
from realcam_jax.cli import bundled
from realcam_jax.cli import render as render_cli

HELP = "stream a held-out synthetic scene through the demo student; mp4 + metrics report"
DEFAULT_CONFIG = "student:demo"
DEFAULT_OUT = os.path.join("runs", "demo")
DEFAULT_TRAJECTORY = "arc_left"


def add_arguments(parser):
  from realcam_jax.data.heldout import CLIP_TRAJECTORY, STARTS
  parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                      help=f"output folder (default {DEFAULT_OUT}; created if missing)")
  parser.add_argument("--trajectory", default=DEFAULT_TRAJECTORY, metavar="PRESET",
                      help=f"target camera: a preset (realcam camera list) or "
                           f"'{CLIP_TRAJECTORY}' (the scene's own target camera); "
                           f"default {DEFAULT_TRAJECTORY}")
  parser.add_argument("--start", choices=STARTS, default=STARTS[0],
                      help="where a preset starts: the scene's target camera (default, a "
                           "viewpoint change as in training) or the source camera")
  parser.add_argument("--scene", type=int, default=0, metavar="N",
                      help="test-split scene index (default 0)")
  parser.add_argument("--frames", type=int, metavar="T",
                      help="source frames (default: the training length; rounded up to "
                           "whole chunks)")
  parser.add_argument("--config", default=DEFAULT_CONFIG,
                      help=f"student config FILE[:ARG] (default {DEFAULT_CONFIG})")
  bundled.add_weight_arguments(parser, DEFAULT_CONFIG)
  parser.add_argument("--size", metavar="HxW", help="frame size (default: the config's)")
  parser.add_argument("--fps", type=float, default=15.0, help="frame rate (default 15)")
  parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")


def checkpoint_paths(args) -> tuple[str | None, str | None]:
  """(student, vae) checkpoint paths; None = random. The demo always defaults to the
  bundled ones (its --config may be an ablation of the demo config)."""
  return bundled.checkpoint_paths(args, bundled=True)


def training_frames(config, vae) -> int:
  """Pixel frames of one training clip: 1 + r (latent_frames - 1)."""
  return 1 + vae.temporal_factor * (int(config.data.latent_frames) - 1)


def stream(session, source, on_chunk=None):
  """Streams `source` u8[T, H, W, 3] (whole chunks) through `session`; returns u8[T, ...]."""
  import numpy as np
  out = []
  while session.frames_done < len(source):
    n = session.chunk_frames()
    session.push(source[session.frames_done:session.frames_done + n])
    out.append(session.pull())
    if on_chunk is not None:
      on_chunk(len(out[-1]))
  return np.concatenate(out)


def finite_or_none(x):
  import math
  x = float(x)
  return x if math.isfinite(x) else None


def quality(generated, truth, source) -> dict:
  """PSNR (dB) / SSIM of the generated frames vs ground truth (and of the source, a baseline)."""
  from realcam_jax.eval import metrics
  p, s = metrics.psnr(generated, truth), metrics.ssim(generated, truth)
  return {"psnr_db": finite_or_none(p.mean), "ssim": finite_or_none(s.mean),
          "psnr_per_frame": [finite_or_none(v) for v in p.per_frame],
          "ssim_per_frame": [finite_or_none(v) for v in s.per_frame],
          "source_as_prediction": {"psnr_db": finite_or_none(metrics.psnr(source, truth).mean),
                                   "ssim": finite_or_none(metrics.ssim(source, truth).mean)}}


def timing(session, compile_s, fps: float) -> dict:
  """Latency numbers of a finished stream (the compile was done by `warmup`)."""
  lat = list(session.latencies)
  steady_frames = sum(session.chunk_frames(i) for i in range(1, len(lat)))
  steady = steady_frames / sum(lat[1:]) if len(lat) > 1 else None
  return {"compile_s": {"first_chunk": compile_s[0], "steady_chunk": compile_s[1]},
          "first_chunk_latency_s": lat[0], "chunk_latency_s": lat,
          "steady_fps": steady, "realtime_fps": fps,
          "realtime": None if steady is None else bool(steady >= fps)}


def summary(report: dict) -> str:
  """One line of the report's headline numbers."""
  def f(x, spec):
    return "n/a" if x is None else format(x, spec)
  c = report["compile_s"]
  return (f"compile {c['first_chunk'] + c['steady_chunk']:.1f} s; first chunk "
          f"{report['first_chunk_latency_s']:.3f} s; steady {f(report['steady_fps'], '.1f')} "
          f"frames/s; PSNR {f(report['psnr_db'], '.2f')} dB, SSIM {f(report['ssim'], '.3f')} "
          f"vs ground truth")


def write_outputs(out_dir: str, view: dict, generated, report: dict, fps: float) -> dict:
  """demo.mp4, frames.npz and report.json in `out_dir` (each atomic); returns their paths."""
  import numpy as np
  from realcam_jax.inference import video_io
  os.makedirs(out_dir, exist_ok=True)
  paths = {k: os.path.join(out_dir, name) for k, name in
           (("video", "demo.mp4"), ("frames", "frames.npz"), ("report", "report.json"))}
  source, truth = view["source_rgb"], view["target_rgb"]
  with video_io.VideoWriter(paths["video"], fps) as writer:
    writer.write(video_io.side_by_side([source, generated, truth], separator=0))
  atomic_file(paths["frames"], lambda f: np.savez_compressed(
      f, source=source, generated=generated, ground_truth=truth,
      target_poses=view["target_poses"]))
  report = {**report, "files": {
      "video": "demo.mp4 (source | generated | ground truth)",
      "frames": "frames.npz (source, generated, ground_truth, target_poses)"}}
  atomic_file(paths["report"], lambda f: f.write(json.dumps(report, indent=2).encode()))
  return paths


def run(args, overrides) -> int:
  from tqdm import tqdm

  from realcam_jax.camera.validate import CameraFileError
  from realcam_jax.data.heldout import heldout_view
  from realcam_jax.inference import video_io
  from realcam_jax.inference.camera_control import CameraCommandError, CameraController
  from realcam_jax.inference.session import StreamingSession, enable_compilation_cache

  if not args.fps > 0:
    raise UserError(f"--fps must be a positive number, got {args.fps}")
  if args.scene < 0:
    raise UserError(f"--scene must be >= 0, got {args.scene}")
  if args.frames is not None and args.frames < 1:
    raise UserError(f"--frames must be >= 1, got {args.frames}")
  if os.path.exists(args.out) and not os.path.isdir(args.out):
    raise UserError(f"--out {args.out} exists and is not a folder")
  student_ckpt, vae_ckpt = checkpoint_paths(args)
  config = render_cli.load_config(args, overrides)
  cache_dir = enable_compilation_cache()
  config, graphdef, params, vae = render_cli.load(
      types.SimpleNamespace(student=student_ckpt, vae=vae_ckpt, config=args.config,
                            random_weights=student_ckpt is None), config)
  height, width = render_cli.parse_size(args.size, config, vae)
  first, chunk = render_cli.first_chunk_frames(config, vae)
  plan = video_io.fit_length(args.frames or training_frames(config, vae), vae.temporal_factor,
                             chunk, first)
  num_frames = plan.frames_model
  if plan.padded:
    print(f"note: --frames {args.frames} rounded up to {num_frames} (whole chunks)",
          file=sys.stderr)
  try:
    view = heldout_view(args.scene, num_frames, height, width, args.trajectory,
                        start=args.start, fps=args.fps)
  except (CameraCommandError, CameraFileError) as e:
    raise UserError(f"--trajectory: {e}") from None
  controller = CameraController(num_frames_hint=num_frames)
  controller.set_path(view["target_poses"], anchor="absolute", label=view["trajectory"])
  session = StreamingSession(config, graphdef, params, vae, height=height, width=width,
                             intrinsics=view["intrinsics"], seed=args.seed,
                             controller=controller, max_frames=plan.latent_frames)
  print(f"scene {args.scene} of the test split (seed {view['seed']}), {num_frames} frames "
        f"{width}x{height}, target path {view['trajectory']} (start: {view['start']})",
        file=sys.stderr)
  print("compiling the chunk step (first and steady shapes) ...", file=sys.stderr)
  compile_s = session.warmup()
  with tqdm(total=num_frames, unit="frame", desc="demo", file=sys.stderr) as bar:
    generated = stream(session, view["source_rgb"], bar.update)

  report = {
      "command": getattr(args, "command_line", "realcam demo"),
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "config": args.config, "student": student_ckpt or "random", "vae": vae_ckpt or "random",
      "random_weights": student_ckpt is None,
      "scene": {"split": "test", "index": args.scene, "seed": view["seed"],
                "trajectory": view["trajectory"], "start": view["start"]},
      "frames": int(num_frames), "size": [height, width], "fps": args.fps,
      "chunk_pairs": session.k,
      "chunk_frames": {"first": session.chunk_frames(0), "steady": session.chunk_frames(1)},
      "chunks": session.chunks_done,
      **timing(session, compile_s, args.fps),
      "compile_note": f"compile_s = one dummy chunk of each shape (compile + run); XLA's "
                      f"persistent cache {cache_dir} makes repeated runs load instead",
      **quality(generated, view["target_rgb"], view["source_rgb"]),
  }
  paths = write_outputs(args.out, view, generated, report, args.fps)
  print(summary(report), file=sys.stderr)
  print(f"wrote {paths['video']} (source | generated | ground truth), {paths['frames']}, "
        f"{paths['report']}")
  return 0

