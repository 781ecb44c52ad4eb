"""`realcam render`: any source video -> the novel view along a camera trajectory (mp4).

Pipeline (policies in docs/streaming_inputs.md and docs/serve.md): read the whole
video -> resample to `--fps` (nearest frame) -> fit to the model size (`--fit crop` by
default) -> pad the last partial chunk by repeating the last frame -> stream chunk by
chunk through a `StreamingSession` -> drop the outputs of padded frames -> write
atomically (the output path only ever holds a complete video).
"""

from __future__ import annotations

import os
import sys

from realcam_jax.cli import UserError, bundled

HELP = "render a source video along a camera trajectory (preset or camera file) to an mp4"
DEFAULT_CONFIG = "student:demo"


def add_model_arguments(p, default_config: str = DEFAULT_CONFIG):
  """--config/--student/--vae/--random-weights/--size/--fps/--seed, shared with `realcam
  serve`. Weights default to the bundled demo checkpoints with the default config."""
  p.add_argument("--config", default=default_config,
                 help=f"student config FILE[:ARG] (default {default_config}; tiny for tests)")
  bundled.add_weight_arguments(p, default_config)
  p.add_argument("--size", metavar="HxW",
                 help="model frame size (default: the config's latent size x the VAE's 8)")
  p.add_argument("--fps", type=float, default=15.0, help="model frame rate (default 15)")
  p.add_argument("--fov", type=float, default=60.0,
                 help="assumed horizontal field of view of the source, degrees (default 60)")
  p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")


def add_arguments(parser):
  parser.add_argument("--video", required=True, metavar="IN", help="source video (any format)")
  parser.add_argument("--trajectory", required=True, metavar="PRESET_OR_FILE",
                      help="target camera: a preset name (realcam camera list) or a camera file")
  parser.add_argument("--camera", metavar="NAME", help="camera of a multi-camera file")
  parser.add_argument("--out", required=True, metavar="OUT.mp4", help="output video")
  parser.add_argument("--side-by-side", action="store_true",
                      help="write source | generated next to each other")
  parser.add_argument("--fit", choices=("crop", "pad"), default="crop",
                      help="resize policy: crop (cover + centre crop, default) or pad (letterbox)")
  add_model_arguments(parser)


def parse_size(text: str | None, config, vae) -> tuple[int, int]:
  if text is None:
    s = vae.spatial_factor
    return int(config.data.latent_height) * s, int(config.data.latent_width) * s
  h, x, w = str(text).lower().partition("x")
  try:
    h, w = int(h), int(w)
    ok = bool(x) and h > 0 and w > 0
  except ValueError:
    ok = False
  if not ok:
    raise UserError(f"--size {text!r}: expected HEIGHTxWIDTH, e.g. --size 64x64")
  s = vae.spatial_factor * int(config.model.patch_size[1])
  if h % s or w % s:
    raise UserError(f"--size {text}: height and width must be multiples of {s} (VAE x patch)")
  return h, w


def load_config(args, overrides):
  from realcam_jax.config import get_config
  return get_config(args.config, overrides)


def load(args, config, out=None):
  """(config, graphdef, params, vae) per --student/--vae/--random-weights: the bundled
  demo checkpoints when --config is the default (UserError on bad or missing paths)."""
  from realcam_jax.inference.load import LoadError, load_models
  student, vae = bundled.checkpoint_paths(args, bundled=args.config == DEFAULT_CONFIG)
  try:
    return load_models(student, vae, config, seed=0, out=out)
  except LoadError as e:
    raise UserError(str(e)) from None


def model_intrinsics(fov: float, tf):
  """Pixel intrinsics of the fitted frames for a source of horizontal FOV `fov`."""
  import numpy as np
  from realcam_jax.camera.intrinsics import intrinsics_from_fov
  w_in, h_in = tf.in_size
  return np.asarray(tf.apply_intrinsics(intrinsics_from_fov(fov, w_in, h_in)), np.float32)


def first_chunk_frames(config, vae) -> tuple[int, int]:
  k, r = int(config.student.chunk_pairs), vae.temporal_factor
  return 1 + r * (k - 1), r * k


def _check_out(path: str):
  from realcam_jax.inference.video_io import _CONTAINERS
  if os.path.splitext(path)[1].lower() not in _CONTAINERS:
    raise UserError(f"--out {path}: expected a name ending in {', '.join(_CONTAINERS)}")
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise UserError(f"--out {path}: folder {folder} does not exist")


def run(args, overrides) -> int:
  import numpy as np
  from tqdm import tqdm

  from realcam_jax.inference import video_io
  from realcam_jax.inference.camera_control import CameraCommandError, CameraController
  from realcam_jax.inference.session import StreamingSession, enable_compilation_cache

  _check_out(args.out)
  if not (args.fps > 0):
    raise UserError(f"--fps must be a positive number, got {args.fps}")
  config = load_config(args, overrides)
  try:
    frames, fps_in = video_io.read_video(args.video)
  except video_io.VideoError as e:
    raise UserError(str(e)) from None
  frames = frames[video_io.resample_fps(len(frames), fps_in, args.fps)]
  controller = CameraController(num_frames_hint=len(frames))
  try:
    controller.set_trajectory(args.trajectory, camera=args.camera)
  except CameraCommandError as e:
    raise UserError(f"--trajectory: {e}") from None
  for notice in controller.notices:
    print(f"note: {notice}", file=sys.stderr)

  enable_compilation_cache()
  config, graphdef, params, vae = load(args, config)
  height, width = parse_size(args.size, config, vae)
  frames, tf = video_io.fit_frames(frames, height, width, mode=args.fit)
  first, chunk = first_chunk_frames(config, vae)
  plan = video_io.fit_length(len(frames), vae.temporal_factor, chunk, first)
  model_frames = video_io.apply_length_plan(frames, plan)
  session = StreamingSession(config, graphdef, params, vae, height=height, width=width,
                             intrinsics=model_intrinsics(args.fov, tf), seed=args.seed,
                             controller=controller)
  print(f"source {args.video}: {plan.frames_in} frames at {args.fps:g} fps (from "
        f"{fps_in:g} fps), {tf.in_size[0]}x{tf.in_size[1]} -> {width}x{height} ({args.fit}); "
        f"{1 + plan.chunks} chunks, {plan.padded} padded frame(s)", file=sys.stderr)
  done = 0
  with video_io.VideoWriter(args.out, args.fps) as writer, \
      tqdm(total=plan.frames_in, unit="frame", desc="render", file=sys.stderr) as bar:
    while done < plan.frames_in:
      n = session.chunk_frames()
      session.push(model_frames[session.frames_done:session.frames_done + n])
      out = session.pull()[:plan.frames_in - done]
      if args.side_by_side:
        out = video_io.side_by_side([frames[done:done + len(out)], out],
                                    ["source", "generated"], separator=2)
      writer.write(out)
      done += len(out)
      bar.update(len(out))
  lat = session.latencies
  steady = (sum(session.chunk_frames(i) for i in range(1, len(lat))) / sum(lat[1:])
            if len(lat) > 1 else float("nan"))
  print(f"first chunk {lat[0]:.2f} s (with compile), steady {steady:.1f} frames/s",
        file=sys.stderr)
  if controller.describe(plan.frames_in - 1)["holding_last_pose"]:
    print("note: the trajectory ended before the video: its last pose was held", file=sys.stderr)
  print(f"wrote {args.out} ({done} frames, {width}x{height}{' side by side' if args.side_by_side else ''}, "
        f"{args.fps:g} fps)")
  return 0
