"""`realcam serve`: a local web page that streams a source video through the student live.

One `Server` = one stdlib `ThreadingHTTPServer` (a thread per request) + one background
`Worker` thread that owns the `StreamingSession`. The worker feeds source frames at the
model fps (never running more than a chunk ahead of playback), generates chunk by chunk
and publishes the (source, generated) frame pairs with play-out times; requests only
read that published state, so a slow or vanished client never blocks generation.
Restart / switch make a new camera controller at once (commands go to the new stream)
and bump the generation; the worker thread itself resets the one session
(`StreamingSession.reset`, compiled step kept) before its next chunk, so a chunk in
flight never writes into the new stream.

Endpoints (JSON unless said otherwise):
  GET  /                 the page (static/index.html, static/app.js)
  GET  /state            stream state: frame counter, latency/FPS, camera (`describe()`),
                         sources, key bindings, last error
  GET  /frame.jpg?view=source|generated|both   the frame playing now (JPEG); header X-Frame
  GET  /stream.mjpg      the same as an MJPEG stream (multipart/x-mixed-replace)
  GET  /path             `controller.path_preview()` of the upcoming camera path
  POST /command          {"command": "pan 5"} or {"key": "ArrowRight"} -> 200 state,
                         400 {"error", "accepted"} for invalid commands (stream keeps running)
  POST /control          {"action": "stop" | "start" | "restart"}
  POST /video            {"source": "synthetic" | one of the allowed video files}
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

log = logging.getLogger(__name__)
STATIC = os.path.join(os.path.dirname(__file__), "static")
SYNTHETIC = "synthetic"
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


@dataclasses.dataclass
class Models:
  """What a session needs besides the source: see `realcam_jax.inference.load`."""
  config: object
  graphdef: object
  params: object
  vae: object
  height: int
  width: int
  fps: float
  intrinsics: np.ndarray       # f32[3, 3] of the model frames
  seed: int = 0


def synthetic_frames(height: int, width: int, num_frames: int = 48, seed: int = 7) -> np.ndarray:
  """A looping synthetic source clip uint8[T, H, W, 3] (the training world's renderer)."""
  from realcam_jax.data.synthetic import sample_clip
  clip = sample_clip(seed=seed, num_frames=num_frames, height=height, width=width,
                     num_target_cameras=1)
  return np.ascontiguousarray(clip["source_rgb"])


def video_frames(path: str, height: int, width: int, fps: float) -> np.ndarray:
  """A video file fitted to the model: resampled to `fps`, centre-cropped (VideoError)."""
  from realcam_jax.inference import video_io
  frames, fps_in = video_io.read_video(path)
  frames = frames[video_io.resample_fps(len(frames), fps_in, fps)]
  return video_io.fit_frames(frames, height, width)[0]


class Worker:
  """The background generation thread of one server (start/stop/restart/switch source)."""

  def __init__(self, models: Models, sources: dict[str, str | None], source: str,
               ahead_chunks: float = 1.0):
    self.m = models
    self.sources = sources                  # name -> path (None = synthetic)
    self.source = source
    self.ahead = ahead_chunks
    self._lock = threading.RLock()
    self._wake = threading.Condition(self._lock)
    self._frames: dict[str, np.ndarray] = {}
    self._thread: threading.Thread | None = None
    self._quit = False
    self.running = False
    self.error: str | None = None
    self.generation = 0                      # bumps on restart / switch
    self._new_stream()
    self.session = self._make_session()
    self._session_generation = self.generation  # stream the session holds

  # ------------------------------------------------------------- control (any thread)
  def start_thread(self):
    self._thread = threading.Thread(target=self._loop, name="realcam-worker", daemon=True)
    self._thread.start()
    self.set_running(True)

  def set_running(self, running: bool):
    with self._wake:
      self.running = running
      if running:
        self._t0 = None                      # re-anchor play-out times after a pause
      self._wake.notify_all()

  def restart(self, source: str | None = None):
    """New stream (fresh caches, camera back at the start) from `source` (default same)."""
    if source is not None and source not in self.sources:
      raise KeyError(source)
    with self._wake:
      if source is not None:
        self.source = source
      self._new_stream()
      self.running = True
      self._wake.notify_all()

  def shutdown(self, timeout: float = 30.0):
    with self._wake:
      self._quit = True
      self._wake.notify_all()
    if self._thread is not None:
      self._thread.join(timeout)

  # ------------------------------------------------------------- published state
  def current(self):
    """(index, source u8[H, W, 3], generated u8[H, W, 3] | None) playing now."""
    with self._lock:
      now = time.monotonic()
      best = None
      for item in self._played:
        if item[0] <= now:
          best = item
        else:
          break
      if best is None:                       # nothing generated yet (compiling)
        frames = self._frames.get(self.source)
        src = (frames[self._src_pos % len(frames)] if frames is not None else
               np.zeros((self.m.height, self.m.width, 3), np.uint8))
        return self.frames_shown, src, None
      _, index, src, gen = best
      return index, src, gen

  @property
  def controller(self):
    """The camera of the current stream (already the new one right after a restart)."""
    return self._controller

  def state(self) -> dict:
    with self._lock:
      s = self.session
      fresh = self._session_generation != self.generation  # reset not done yet
      lat = [] if fresh else list(s.latencies)
      chunks, frames = (0, 0) if fresh else (s.chunks_done, s.frames_done)
      index = self.current()[0]
      steady = lat[2:][-8:]                # chunks 0 and 1 run new shapes (compile)
      per_chunk = s.r * s.k
      return {
          "running": self.running, "source": self.source, "sources": list(self.sources),
          "generation": self.generation, "frame": index, "chunks_done": chunks,
          "frames_generated": frames, "compiling": chunks == 0 and self.running,
          "latency_s": lat[-1] if lat else None,
          "first_chunk_s": lat[0] if lat else None,
          "gen_fps": (per_chunk * len(steady) / sum(steady)) if steady else None,
          "model_fps": self.m.fps, "size": [self.m.height, self.m.width],
          "camera": self._controller.describe(), "error": self.error,
      }

  # ------------------------------------------------------------- worker thread
  def _src_frames(self) -> np.ndarray:
    name = self.source
    if name not in self._frames:
      path = self.sources[name]
      self._frames[name] = (synthetic_frames(self.m.height, self.m.width) if path is None else
                            video_frames(path, self.m.height, self.m.width, self.m.fps))
    return self._frames[name]

  def _make_session(self):
    from realcam_jax.inference.session import StreamingSession
    m = self.m
    return StreamingSession(m.config, m.graphdef, m.params, m.vae, height=m.height,
                            width=m.width, intrinsics=m.intrinsics, seed=m.seed,
                            controller=self._controller)

  def _new_stream(self):
    """A new stream's camera and play-out state (under the lock); see `_sync_session`."""
    from realcam_jax.inference.camera_control import CameraController
    self._controller = CameraController()
    self.generation += 1
    self._src_pos = 0
    self._played: collections.deque = collections.deque(maxlen=64)
    self.frames_shown = 0
    self._t0 = None
    self.error = None

  def _loop(self):
    while True:
      with self._wake:
        while not self._quit and (not self.running or self._ahead_s() > 0):
          self._wake.wait(0.02 if self.running else 0.5)
        if self._quit:
          return
        self._sync_session()
        gen, session = self.generation, self.session
        try:
          frames = self._src_frames()
        except Exception as e:  # noqa: BLE001 - a bad file must not kill the server
          self.error = f"source {self.source}: {e}"
          self.running = False
          continue
        n = session.chunk_frames()
        idx = (self._src_pos + np.arange(n)) % len(frames)
        chunk = frames[idx]
      try:
        session.push(chunk)                  # outside the lock: commands keep flowing
        out = session.pull()
      except Exception as e:  # noqa: BLE001
        log.exception("generation failed")
        with self._lock:
          self.error = f"generation failed: {type(e).__name__}: {e}"
          self.running = False
        continue
      with self._lock:
        if gen != self.generation:           # restarted / switched meanwhile: discard
          continue
        self._src_pos += n
        now = time.monotonic()
        if self._t0 is None or self._t0 < now:
          self._t0 = now
        for src, g in zip(chunk, out):
          self._played.append((self._t0, self.frames_shown, src, g))
          self.frames_shown += 1
          self._t0 += 1.0 / self.m.fps

  def _sync_session(self):
    """Worker thread, under the lock: reset the session if a new stream was requested."""
    if self._session_generation != self.generation:
      self.session.reset(seed=self.m.seed, controller=self._controller)
      self._session_generation = self.generation

  def _ahead_s(self) -> float:
    """Seconds of generated video still to play beyond the allowed lead."""
    if self._t0 is None:
      return 0.0
    lead = self.ahead * self.session.chunk_frames() / self.m.fps
    return self._t0 - time.monotonic() - lead


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
  ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                         [cv2.IMWRITE_JPEG_QUALITY, quality])
  if not ok:
    raise RuntimeError("JPEG encoding failed")
  return buf.tobytes()


def compose(view: str, src: np.ndarray, gen: np.ndarray | None) -> np.ndarray:
  if gen is None:
    gen = np.full_like(src, 64)               # nothing generated yet (compiling)
  if view == "source":
    return src
  if view == "generated":
    return gen
  sep = np.full((src.shape[0], 1, 3), 255, np.uint8)
  return np.concatenate([src, sep, gen], axis=1)


class Handler(BaseHTTPRequestHandler):
  server_version = "realcam"
  protocol_version = "HTTP/1.1"

  # ------------------------------------------------------------- helpers
  @property
  def worker(self) -> Worker:
    return self.server.worker

  def log_message(self, fmt, *args):       # quiet by default; --verbose logs requests
    if getattr(self.server, "verbose", False):
      super().log_message(fmt, *args)

  def _send(self, status, body: bytes, ctype: str, headers: dict | None = None):
    self.send_response(status)
    self.send_header("Content-Type", ctype)
    self.send_header("Content-Length", str(len(body)))
    self.send_header("Cache-Control", "no-store")
    for k, v in (headers or {}).items():
      self.send_header(k, str(v))
    self.end_headers()
    if self.command != "HEAD":
      self.wfile.write(body)

  def _json(self, obj, status=HTTPStatus.OK):
    self._send(status, json.dumps(obj).encode(), "application/json")

  def _body(self) -> dict:
    n = int(self.headers.get("Content-Length") or 0)
    if n > 1 << 16:
      raise ValueError("request body too large")
    raw = self.rfile.read(n) if n else b""
    if not raw:
      return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
      raise ValueError("expected a JSON object")
    return data

  def handle_one_request(self):
    try:
      super().handle_one_request()
    except _CLIENT_GONE:
      self.close_connection = True           # the client left; nothing to answer

  # ------------------------------------------------------------- GET
  def do_GET(self):
    url = urllib.parse.urlparse(self.path)
    query = urllib.parse.parse_qs(url.query)
    route = url.path
    if route in ("/", "/index.html"):
      return self._static("index.html", "text/html; charset=utf-8")
    if route == "/app.js":
      return self._static("app.js", "text/javascript; charset=utf-8")
    if route == "/state":
      return self._json(self.server.state())
    if route == "/path":
      try:
        count = min(max(int(query.get("count", ["60"])[0]), 1), 600)
      except ValueError:
        return self._json({"error": "count must be an integer"}, HTTPStatus.BAD_REQUEST)
      return self._json(self.worker.controller.path_preview(count=count))
    if route == "/frame.jpg":
      view = query.get("view", ["both"])[0]
      index, src, gen = self.worker.current()
      return self._send(HTTPStatus.OK, encode_jpeg(compose(view, src, gen)), "image/jpeg",
                        {"X-Frame": index})
    if route == "/stream.mjpg":
      return self._mjpeg(query.get("view", ["both"])[0])
    self._json({"error": f"no such page {route}"}, HTTPStatus.NOT_FOUND)

  do_HEAD = do_GET

  def _static(self, name, ctype):
    with open(os.path.join(STATIC, name), "rb") as f:
      self._send(HTTPStatus.OK, f.read(), ctype)

  def _mjpeg(self, view):
    self.close_connection = True
    self.send_response(HTTPStatus.OK)
    self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
    self.send_header("Cache-Control", "no-store")
    self.send_header("Connection", "close")
    self.end_headers()
    last = None
    while not self.server.stopping.is_set():
      index, src, gen = self.worker.current()
      if (index, gen is None) != last:
        last = (index, gen is None)
        jpg = encode_jpeg(compose(view, src, gen))
        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nX-Frame: %d\r\n"
                         b"Content-Length: %d\r\n\r\n" % (index, len(jpg)) + jpg + b"\r\n")
        self.wfile.flush()
      self.server.stopping.wait(0.5 / self.worker.m.fps)

  # ------------------------------------------------------------- POST
  def do_POST(self):
    from realcam_jax.inference.camera_control import (COMMAND_HELP, CameraCommandError,
                                                      command_for_key)
    route = urllib.parse.urlparse(self.path).path
    try:
      body = self._body()
    except (ValueError, UnicodeDecodeError) as e:
      return self._json({"error": f"bad request body: {e}"}, HTTPStatus.BAD_REQUEST)
    w = self.worker
    if route == "/command":
      text = body.get("command")
      if text is None and "key" in body:
        text = command_for_key(str(body["key"]))
        if text is None:
          return self._json({"error": f"no camera command is bound to key {body['key']!r}",
                             "accepted": COMMAND_HELP}, HTTPStatus.BAD_REQUEST)
      if not isinstance(text, str):
        return self._json({"error": 'expected {"command": "pan 5"} or {"key": "ArrowRight"}',
                           "accepted": COMMAND_HELP}, HTTPStatus.BAD_REQUEST)
      try:
        with w._lock:
          w.controller.apply_command(text)
      except CameraCommandError as e:
        return self._json({"error": str(e), "accepted": COMMAND_HELP}, HTTPStatus.BAD_REQUEST)
      return self._json(self.server.state())
    if route == "/control":
      action = body.get("action")
      if action == "stop":
        w.set_running(False)
      elif action == "start":
        w.set_running(True)
      elif action == "restart":
        w.restart()
      else:
        return self._json({"error": f"unknown action {action!r}: expected stop, start or "
                                    "restart"}, HTTPStatus.BAD_REQUEST)
      return self._json(self.server.state())
    if route == "/video":
      source = body.get("source")
      if source not in w.sources:
        return self._json({"error": f"unknown source {source!r}: expected one of "
                                    f"{', '.join(w.sources)}"}, HTTPStatus.BAD_REQUEST)
      w.restart(source)
      return self._json(self.server.state())
    self._json({"error": f"no such endpoint {route}"}, HTTPStatus.NOT_FOUND)


class Server(ThreadingHTTPServer):
  """HTTP server + worker. `serve_forever()` in any thread, `close()` to stop both."""

  daemon_threads = True
  allow_reuse_address = True

  def __init__(self, models: Models, sources: dict[str, str | None], source: str,
               host: str = "127.0.0.1", port: int = 8765, verbose: bool = False):
    if source not in sources:
      raise ValueError(f"source {source!r} is not one of {', '.join(sources)}")
    super().__init__((host, port), Handler)
    self.verbose = verbose
    self.stopping = threading.Event()
    self.worker = Worker(models, sources, source)
    self.worker.start_thread()

  @property
  def url(self) -> str:
    host, port = self.server_address[:2]
    return f"http://{host}:{port}/"

  def state(self) -> dict:
    from realcam_jax.inference.camera_control import KEY_BINDINGS
    return dict(self.worker.state(), keys=KEY_BINDINGS)

  def handle_error(self, request, client_address):
    import sys
    exc = sys.exc_info()[1]
    if isinstance(exc, _CLIENT_GONE):
      return                                 # a client disconnected: not an error
    log.exception("error while handling a request from %s", client_address)

  def close(self):
    self.stopping.set()
    self.shutdown()
    self.server_close()
    self.worker.shutdown()
