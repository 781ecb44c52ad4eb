"""Video files in and out, and side-by-side panels for the demo output.

Reading and writing go through the ffmpeg binary bundled with imageio-ffmpeg
(anything ffmpeg decodes in; h264 mp4/mov/mkv out). `VideoWriter` writes to a
temporary file next to the target and renames it on a successful close; on
any error the temporary file is deleted, so the final path never holds a
half-written video. Fitting a video to the model (size, frame rate, length)
is in `video_fit` and re-exported here. Policies: docs/streaming_inputs.md.

Frames are `uint8[T, H, W, 3]` RGB throughout.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import subprocess
import tempfile
import weakref
from fractions import Fraction
from typing import Iterator

import cv2
import imageio_ffmpeg
import numpy as np

from realcam_jax.inference.video_fit import (FitTransform, LengthPlan, apply_length_plan,
                                             check_frames, fit_frames, fit_length,
                                             iter_resampled, resample_fps)

__all__ = ["FitTransform", "LengthPlan", "VideoError", "VideoReader", "VideoWriter",
           "apply_length_plan", "fit_frames", "fit_length", "iter_resampled", "iter_video",
           "read_video", "resample_fps", "side_by_side", "write_video"]

_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


class VideoError(ValueError):
  """A video file cannot be read or written; the message names the file and the problem."""


def _ffmpeg_reason(err: BaseException) -> str:
  """The most telling line of an ffmpeg error dump."""
  lines = [re.sub(r"^\[[^\]]*\]\s*", "", ln.strip()) for ln in str(err).splitlines()]
  lines = [ln for ln in lines if ln]
  for key in ("does not contain any stream", "No such file", "Invalid data found",
              "moov atom not found", "Permission denied"):
    for ln in lines:
      if key in ln:
        return ln
  return lines[-1] if lines else type(err).__name__


def _check_readable(path: str):
  if not os.path.exists(path):
    raise VideoError(f"video file {path} does not exist")
  if os.path.isdir(path):
    raise VideoError(f"video file {path} is a directory, expected a video file")
  if os.path.getsize(path) == 0:
    raise VideoError(f"video file {path} is empty (0 bytes)")


class VideoReader:
  """Streams frames of a video file, decoded by ffmpeg.

  Attributes:
    path: the file.
    fps: frames per second (from the container, or the `fps` argument).
    width, height: size of the decoded frames (after ffmpeg's auto-rotation).
    duration: seconds (0 when unknown).

  Iterating yields read-only `uint8[H, W, 3]` frames. Use as a context manager
  (or call `close`) to stop ffmpeg early.

  Raises:
    VideoError: missing, empty, unreadable or corrupt file, no video stream,
      or (while iterating) no frames at all.
  """

  def __init__(self, path, fps: float | None = None):
    self.path = os.fspath(path)
    _check_readable(self.path)
    self._gen = imageio_ffmpeg.read_frames(self.path)
    try:
      meta = next(self._gen)
    except (OSError, RuntimeError, StopIteration) as e:
      self.close()
      reason = _ffmpeg_reason(e)
      if "does not contain any stream" in reason:
        raise VideoError(f"video file {self.path} has no video frames (no video stream)") from None
      raise VideoError(f"video file {self.path} is not a readable video ({reason})") from None
    self.width, self.height = (int(x) for x in meta["size"])
    self.duration = float(meta.get("duration") or 0.0)
    self.fps = float(fps or meta.get("fps") or 0.0)
    if not self.fps > 0:
      self.close()
      raise VideoError(f"video file {self.path}: the frame rate is unknown; pass fps=")
    self._count = 0

  def __iter__(self) -> Iterator[np.ndarray]:
    shape = (self.height, self.width, 3)
    try:
      for buf in self._gen:
        self._count += 1
        yield np.frombuffer(buf, np.uint8).reshape(shape)
    except RuntimeError as e:
      if self._count == 0:
        raise VideoError(f"video file {self.path} is corrupt: no frame could be decoded "
                         f"({_ffmpeg_reason(e)})") from None
      raise VideoError(f"video file {self.path} is corrupt after frame {self._count - 1} "
                       f"({_ffmpeg_reason(e)})") from None
    if self._count == 0:
      raise VideoError(f"video file {self.path} contains no video frames")

  def close(self):
    self._gen.close()

  def __enter__(self) -> VideoReader:
    return self

  def __exit__(self, *exc):
    self.close()


def _check_max_frames(max_frames):
  if max_frames is not None and not (isinstance(max_frames, int) and max_frames >= 1):
    raise VideoError(f"max_frames must be an integer >= 1 or None, got {max_frames!r}")


def iter_video(path, *, max_frames: int | None = None) -> Iterator[np.ndarray]:
  """Yields `uint8[H, W, 3]` frames (read-only) of any ffmpeg-readable video, lazily."""
  _check_max_frames(max_frames)
  with VideoReader(path) as reader:
    yield from itertools.islice(reader, max_frames)


def read_video(path, *, max_frames: int | None = None) -> tuple[np.ndarray, float]:
  """Reads a whole video (or its first `max_frames`): `(uint8[T, H, W, 3], fps)`."""
  _check_max_frames(max_frames)
  with VideoReader(path) as reader:
    return np.stack(list(itertools.islice(reader, max_frames))), reader.fps


# ----------------------------------------------------------------- writing
def _as_frames(frames, what="frames") -> np.ndarray:
  return check_frames(frames, what, VideoError)


def _cleanup(proc, tmp_path):
  if proc is not None and proc.poll() is None:
    proc.kill()
    proc.wait()
  if tmp_path and os.path.exists(tmp_path):
    os.remove(tmp_path)


class VideoWriter:
  """Writes an h264 video; the file appears at `path` only after a successful close.

  Frames go to ffmpeg (libx264, yuv420p, `crf`) writing a hidden temporary file
  in the same directory; `close()` waits for ffmpeg and renames it to `path`.
  Leaving the `with` block by an exception (or ffmpeg failing) deletes the
  temporary file and leaves `path` untouched. Odd sizes are padded to even
  (yuv420p needs even sizes) by repeating the last row / column.

  Args:
    path: output file (.mp4, .m4v, .mov or .mkv); its directory must exist.
    fps: frames per second (> 0; fractional rates like 29.97 are kept exact).
    crf: x264 quality, 0 (lossless) .. 51; 18 is visually lossless.
    preset: x264 speed preset.
  """

  def __init__(self, path, fps: float, *, crf: int = 18, preset: str = "veryfast"):
    self.path = os.fspath(path)
    ext = os.path.splitext(self.path)[1].lower()
    if ext not in _CONTAINERS:
      raise VideoError(f"cannot write video {self.path}: expected a name ending in "
                       f"{', '.join(_CONTAINERS)}")
    folder = os.path.dirname(os.path.abspath(self.path))
    if not os.path.isdir(folder):
      raise VideoError(f"cannot write video {self.path}: folder {folder} does not exist")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
      raise VideoError(f"cannot write video {self.path}: fps must be a positive number, got "
                       f"{fps!r}")
    self.fps, self.crf, self.preset = float(fps), int(crf), preset
    self._format = _CONTAINERS[ext]
    fd, self._tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.path)}.", suffix=".part",
                                     dir=folder)
    os.close(fd)
    self._proc = None
    self._log = None
    self._size = None
    self.frame_size = None  # (height, width) of the frames given
    self.frames_written = 0
    self._finalizer = weakref.finalize(self, _cleanup, None, self._tmp)

  def _start(self, height, width):
    self._size = (height, width)
    rate = Fraction(self.fps).limit_denominator(100000)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
           "-r", f"{rate.numerator}/{rate.denominator}", "-i", "-", "-an",
           "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf),
           "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", self._format, self._tmp]
    self._log = tempfile.TemporaryFile()
    self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=self._log)
    self._finalizer.detach()
    self._finalizer = weakref.finalize(self, _cleanup, self._proc, self._tmp)

  def _ffmpeg_log(self) -> str:
    if self._log is None:
      return ""
    self._log.seek(0)
    return self._log.read().decode(errors="replace").strip()[-2000:]

  def write(self, frames):
    """Appends `uint8[T, H, W, 3]` or `[H, W, 3]` frames (same size as the first)."""
    if self._tmp is None:
      raise VideoError(f"video {self.path} is already closed")
    frames = _as_frames(frames, f"frames for {self.path}")
    h, w = frames.shape[1:3]
    if self._size is None:
      self._start(h + h % 2, w + w % 2)
      self.frame_size = (h, w)
    if (h, w) != self.frame_size:
      raise VideoError(f"frames for {self.path}: size {h}x{w} differs from the first frame's "
                       f"{self.frame_size[0]}x{self.frame_size[1]} (height x width)")
    if h % 2 or w % 2:
      frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    try:
      self._proc.stdin.write(np.ascontiguousarray(frames).tobytes())
    except (BrokenPipeError, OSError):
      raise VideoError(f"writing video {self.path} failed: ffmpeg stopped "
                       f"({self._ffmpeg_log() or 'no message'})") from None
    self.frames_written += len(frames)

  def abort(self):
    """Stops ffmpeg and deletes the temporary file; `path` is left untouched."""
    self._finalizer()
    self._tmp = None

  def close(self):
    """Finishes the file and moves it to `path`; raises VideoError (and cleans up) on failure."""
    if self._tmp is None:
      return
    try:
      if self._proc is None:
        raise VideoError(f"video {self.path}: no frames were written")
      try:
        self._proc.stdin.close()
      except OSError:
        pass
      if self._proc.wait() != 0 or not os.path.getsize(self._tmp):
        raise VideoError(f"writing video {self.path} failed: ffmpeg exited with status "
                         f"{self._proc.returncode} ({self._ffmpeg_log() or 'no message'})")
      # mkstemp files are 0600; give the finished video the usual permissions.
      umask = os.umask(0)
      os.umask(umask)
      os.chmod(self._tmp, 0o666 & ~umask)
      os.replace(self._tmp, self.path)
      self._finalizer.detach()
      self._tmp = None
    finally:
      if self._log is not None:
        self._log.close()
        self._log = None
      if self._tmp is not None:
        self.abort()

  def __enter__(self) -> VideoWriter:
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc_type is None:
      self.close()
    else:
      self.abort()


def write_video(path, frames, fps: float, **kwargs):
  """Writes `uint8[T, H, W, 3]` frames (or an iterable of `[H, W, 3]` frames) to `path`."""
  with VideoWriter(path, fps, **kwargs) as writer:
    if isinstance(frames, np.ndarray):
      writer.write(frames)
    else:
      for frame in frames:
        writer.write(frame)


# ---------------------------------------------------------------- panels
def side_by_side(panels, labels=None, separator: int = 4,
                 separator_color=(255, 255, 255)) -> np.ndarray:
  """Panels `[uint8[T, H_i, W_i, 3]]` next to each other, labelled, with separators.

  Panels are scaled to the first panel's height (aspect kept); labels are drawn
  in the top-left corner on a dark box (cv2.putText).

  Returns:
    `uint8[T, H, sum(W_i') + separator * (n - 1), 3]`.
  """
  panels = [_as_frames(p, f"side_by_side panel {i}") for i, p in enumerate(panels)]
  if not panels:
    raise ValueError("side_by_side: no panels given")
  labels = [None] * len(panels) if labels is None else list(labels)
  if len(labels) != len(panels):
    raise ValueError(f"side_by_side: {len(panels)} panels but {len(labels)} labels")
  lengths = {len(p) for p in panels}
  if len(lengths) != 1:
    raise ValueError(f"side_by_side: panels have different frame counts "
                     f"{[len(p) for p in panels]}; expected the same")
  h = panels[0].shape[1]
  out = []
  for i, (p, label) in enumerate(zip(panels, labels)):
    if p.shape[1] != h:
      w = max(1, round(p.shape[2] * h / p.shape[1]))
      p = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in p])
    else:
      p = p.copy()
    if label:
      _draw_label(p, str(label))
    if i:
      out.append(np.broadcast_to(np.asarray(separator_color, np.uint8),
                                 (len(p), h, separator, 3)))
    out.append(p)
  return np.ascontiguousarray(np.concatenate(out, axis=2))


def _draw_label(frames, text):
  h, w = frames.shape[1:3]
  scale = max(0.3, min(1.0, h / 400))
  thick = 1 if h < 500 else 2
  (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
  pad = max(2, th // 3)
  box = frames[:, :th + base + 2 * pad, :min(w, tw + 2 * pad)]
  box[:] = (box.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken for contrast
  for f in frames:
    cv2.putText(f, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                thick, cv2.LINE_AA)
