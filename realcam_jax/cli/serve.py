"""`realcam serve`: a local web page to steer the camera live (docs/serve.md)."""

from __future__ import annotations

import os
import sys

from realcam_jax.cli import UserError
from realcam_jax.cli import render as render_cli

HELP = "local web page: source and generated view side by side, steer the camera live"


def add_arguments(parser):
  parser.add_argument("--host", default="127.0.0.1",
                      help="address to bind (default 127.0.0.1: this machine only)")
  parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any)")
  parser.add_argument("--video", action="append", default=[], metavar="FILE",
                      help="source video the page may play (repeatable; the first plays first)")
  parser.add_argument("--synthetic", action="store_true",
                      help="offer the synthetic scene (the default when no --video is given)")
  parser.add_argument("--verbose", action="store_true", help="log every request")
  render_cli.add_model_arguments(parser)


def build_server(args, overrides, out=None):
  """A started `Server` (worker running) for parsed `args`; raises UserError on bad input."""
  import numpy as np

  from realcam_jax.inference import video_io
  from realcam_jax.inference.session import enable_compilation_cache
  from realcam_jax.serve import server as srv

  sources: dict[str, str | None] = {}
  for path in args.video:
    if not os.path.isfile(path):
      raise UserError(f"--video {path}: the file does not exist")
    sources[os.path.basename(path)] = os.path.abspath(path)
  if args.synthetic or not sources:
    sources[srv.SYNTHETIC] = None
  if not args.fps > 0:
    raise UserError(f"--fps must be a positive number, got {args.fps}")
  config = render_cli.load_config(args, overrides)
  enable_compilation_cache()
  config, graphdef, params, vae = render_cli.load(args, config, out=out)
  config = endless_window(config, out=out)
  height, width = render_cli.parse_size(args.size, config, vae)
  first = next(iter(sources))
  if sources[first] is not None:
    try:  # check the first video now: a bad file is a one-line error, not a dead stream
      with video_io.VideoReader(sources[first]) as reader:
        w_in, h_in = reader.width, reader.height
    except video_io.VideoError as e:
      raise UserError(str(e)) from None
  else:
    w_in, h_in = width, height
  _, tf = video_io.fit_frames(np.zeros((1, h_in, w_in, 3), np.uint8),
                              height, width)
  models = srv.Models(config, graphdef, params, vae, height, width, args.fps,
                      render_cli.model_intrinsics(args.fov, tf), args.seed)
  try:
    return srv.Server(models, sources, first, args.host, args.port, verbose=args.verbose)
  except OSError as e:
    raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None


def endless_window(config, out=None):
  """`config` with a rolling KV window when it has none: a served stream never ends, and an
  unlimited cache (student.window_chunks=0) is exact only up to student.max_frames. The
  window keeps the same attention span: one sink chunk and the cache's chunks minus two
  (the ring holds one chunk more than its window). A config with a window is unchanged."""
  import math
  s = config.student
  if int(s.window_chunks) > 0:
    return config
  chunks = math.ceil(int(s.max_frames) / int(s.chunk_pairs))
  if chunks < 3:
    raise UserError(
        f"serve needs a rolling KV window: student.window_chunks=0 and student.max_frames="
        f"{s.max_frames} ({chunks} chunks of student.chunk_pairs={s.chunk_pairs}) is too "
        f"short for one; pass --config.student.window_chunks=W --config.student.sink_chunks=S")
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.student.sink_chunks = 1
    config.student.window_chunks = chunks - 2
  print(f"serve: student.window_chunks=0 caches only student.max_frames={s.max_frames} "
        f"frames; streaming without end with a rolling window (student.sink_chunks=1, "
        f"student.window_chunks={chunks - 2}; set them with --config.student.*)",
        file=out or sys.stderr)
  return config


def run(args, overrides) -> int:
  server = build_server(args, overrides)
  print(f"serving on {server.url} (Ctrl-C to stop); the first chunk compiles, then the "
        f"generated view starts", file=sys.stderr)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    print("stopping", file=sys.stderr)
  finally:
    server.stopping.set()
    server.server_close()
    server.worker.shutdown()
  return 0
