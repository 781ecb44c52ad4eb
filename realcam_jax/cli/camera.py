"""`realcam camera {show,list,convert}`: inspect, list and convert camera paths."""

from __future__ import annotations

import ast
import os

from realcam_jax.cli import UserError

HELP = "show, list and convert camera trajectories (files and named presets)"
DEFAULT_FRAMES = 81


def add_arguments(parser):
  sub = parser.add_subparsers(dest="camera_command", metavar="ACTION")
  show = sub.add_parser("show",
                        help="print a summary of a camera file or preset, optionally plot it")
  show.add_argument("source", metavar="FILE_OR_PRESET")
  _add_source_args(show)
  show.add_argument("--plot", metavar="OUT.png", help="write a 3D plot of the path(s)")
  sub.add_parser("list", help="list the named trajectory presets")
  conv = sub.add_parser("convert", help="convert between camera file formats (or save a preset)")
  conv.add_argument("source", metavar="IN", help="camera file or preset name")
  conv.add_argument("out", metavar="OUT")
  _add_source_args(conv)
  conv.add_argument("--from", dest="from_format", metavar="FMT",
                    help="input format (default: detected): json, npz, recammaster, realestate10k")
  conv.add_argument("--to", dest="to_format", metavar="FMT",
                    help="output format (default: from the extension; .json means ours)")


def _add_source_args(p):
  p.add_argument("--frames", type=int, metavar="N",
                 help=f"number of frames (presets: default {DEFAULT_FRAMES}; files: resample)")
  p.add_argument("--camera", metavar="NAME", help="pick one camera of a multi-camera file")
  p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                 help="preset parameter, e.g. --param degrees=30 (repeatable)")


def _parse_params(items):
  params = {}
  for item in items:
    key, eq, value = item.partition("=")
    if not eq or not key:
      raise UserError(f"--param {item!r}: expected KEY=VALUE, e.g. --param degrees=30")
    try:
      params[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      params[key] = value
  return params


def load_tracks(source, frames=None, camera=None, params=(), fmt=None):
  """`{name: CameraTrack}` from a camera file or a preset name (raises UserError)."""
  from realcam_jax import camera as cam
  from realcam_jax.camera import io

  if frames is not None and frames < 1:
    raise UserError(f"--frames must be >= 1, got {frames}")
  params = _parse_params(params)
  try:
    if os.path.exists(source):
      if params:
        raise UserError(f"--param only applies to presets, not to the file {source}")
      tracks = io.read_cameras(source, fmt)
      if camera is not None:
        if camera not in tracks:
          raise UserError(f"camera {camera} is not in {source}: expected one of "
                          f"{', '.join(tracks)}")
        tracks = {camera: tracks[camera]}
      if frames is not None:
        tracks = {n: io.CameraTrack(cam.resample_path(t.poses, frames)) for n, t in tracks.items()}
      return tracks
    if source not in cam.list_trajectories():
      raise UserError(f"{source!r} is neither an existing camera file nor a trajectory name; "
                      f"expected a file or one of: {', '.join(cam.list_trajectories())}")
    if camera is not None:
      raise UserError(f"--camera only applies to files, not to the preset {source!r}")
    poses = cam.get_trajectory(source, frames or DEFAULT_FRAMES, **params)
    return {source: io.CameraTrack(poses)}
  except cam.CameraFileError as e:
    raise UserError(str(e)) from None


def _show(args):
  from realcam_jax.camera import summary
  tracks = load_tracks(args.source, args.frames, args.camera, args.param)
  for name, track in tracks.items():
    s = summary.path_summary(track.poses)
    print(summary.format_summary(name, s))
    if track.intrinsics is not None:
      k = track.intrinsics[0]
      print(f"  intrinsics (normalised) fx={k[0, 0]:.4f} fy={k[1, 1]:.4f} "
            f"cx={k[0, 2]:.4f} cy={k[1, 2]:.4f}")
  if args.plot:
    summary.plot_paths({n: t.poses for n, t in tracks.items()}, args.plot,
                       title=os.path.basename(args.source))
    print(f"wrote {args.plot}")
  return 0


def _list(_):
  from realcam_jax import camera as cam
  names = cam.list_trajectories()
  width = max(len(n) for n in names)
  for name in names:
    print(f"{name:<{width}}  {cam.describe_trajectory(name)}")
  return 0


def _convert(args):
  from realcam_jax.camera import CameraFileError, io
  tracks = load_tracks(args.source, args.frames, args.camera, args.param, args.from_format)
  try:
    io.write_cameras(args.out, tracks, args.to_format)
  except CameraFileError as e:
    raise UserError(str(e)) from None
  n = len(next(iter(tracks.values())).poses)
  print(f"wrote {args.out} ({len(tracks)} camera(s), {n} frames)")
  return 0


def run(args, overrides) -> int:
  if overrides:
    raise UserError(f"camera takes no --config overrides, got {' '.join(overrides)}")
  action = {"show": _show, "list": _list, "convert": _convert}.get(args.camera_command)
  if action is None:
    raise UserError("expected an action: show, list or convert (see realcam camera --help)")
  return action(args)
