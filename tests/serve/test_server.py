"""`realcam serve` on the tiny config at 16x16 (random weights): HTTP API and a real browser.

One server for the module (its worker compiles the two chunk shapes once). The browser
test drives Debian's Chromium over the DevTools protocol on a pipe (no extra Python
packages); it is skipped only when no chromium binary is installed.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from realcam_jax.cli import build_parser
from realcam_jax.cli import serve as serve_cli

CLIP = os.path.join(os.path.dirname(__file__), "..", "inference", "data",
                    "recammaster_4_160x90_12f.mp4")
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)
WAIT = 600  # seconds: XLA compiles two chunk shapes on a loaded 2-core CPU


@pytest.fixture(scope="module")
def server():
  parser, _ = build_parser()
  args = parser.parse_args(["serve", "--port", "0", "--config", "student:tiny", "--size",
                            "16x16", "--video", CLIP, "--synthetic"])
  srv = serve_cli.build_server(args, [])
  thread = threading.Thread(target=srv.serve_forever, daemon=True)
  thread.start()
  yield srv
  srv.close()
  thread.join(10)
  assert not thread.is_alive() and not srv.worker._thread.is_alive()


def _get(srv, path, timeout=30):
  with urllib.request.urlopen(srv.url + path.lstrip("/"), timeout=timeout) as r:
    return r.status, r.headers, r.read()


def _post(srv, path, body):
  req = urllib.request.Request(srv.url + path.lstrip("/"), data=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"}, method="POST")
  try:
    with urllib.request.urlopen(req, timeout=30) as r:
      return r.status, json.loads(r.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def _state(srv):
  return json.loads(_get(srv, "/state")[2])


def _wait_for(srv, cond, what, timeout=WAIT):
  t0 = time.time()
  while time.time() - t0 < timeout:
    st = _state(srv)
    assert st["error"] is None, st["error"]
    if cond(st):
      return st
    time.sleep(0.5)
  raise AssertionError(f"timed out after {timeout} s waiting for {what}: {st}")


def test_page_and_state(server):
  status, headers, body = _get(server, "/")
  assert status == 200 and headers["Content-Type"].startswith("text/html")
  assert b"/app.js" in body
  assert _get(server, "/app.js")[0] == 200
  st = _state(server)
  assert st["sources"] == ["recammaster_4_160x90_12f.mp4", "synthetic"]
  assert st["keys"]["ArrowRight"] == "pan 5"
  path = json.loads(_get(server, "/path?count=10")[2])
  assert len(path["positions"]) == 10 and len(path["positions"][0]) == 3


def test_frames_advance(server):
  # Two chunks: both chunk shapes have compiled, then the counter moves at the model fps.
  st = _wait_for(server, lambda s: s["chunks_done"] >= 2, "two chunks")
  f0 = st["frame"]
  status, headers, jpg = _get(server, "/frame.jpg")
  assert status == 200 and headers["Content-Type"] == "image/jpeg" and jpg[:2] == b"\xff\xd8"
  import cv2
  img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
  assert img.shape == (16, 16 + 1 + 16, 3)
  st = _wait_for(server, lambda s: s["frame"] > f0 + 5, "the frame counter to advance")
  assert st["latency_s"] > 0 and st["running"]
  assert int(_get(server, "/frame.jpg")[1]["X-Frame"]) >= f0


def test_commands(server):
  before = _state(server)["camera"]["target"]["yaw_deg"]
  status, st = _post(server, "/command", {"command": "pan 10"})
  assert status == 200 and st["camera"]["target"]["yaw_deg"] == pytest.approx(before + 10)
  status, st = _post(server, "/command", {"key": "ArrowRight"})
  assert status == 200 and st["camera"]["target"]["yaw_deg"] == pytest.approx(before + 15)
  # The blended pose follows within the transition (frames keep being generated).
  _wait_for(server, lambda s: s["camera"]["pose"]["yaw_deg"] > before + 1, "the pose to move")
  status, err = _post(server, "/command", {"command": "fly to the moon"})
  assert status == 400 and "invalid camera command" in err["error"]
  assert "pan|tilt|roll|orbit" in err["accepted"]
  assert _post(server, "/command", {"key": "F13"})[0] == 400
  st = _state(server)
  assert st["running"] and st["error"] is None
  assert st["camera"]["target"]["yaw_deg"] == pytest.approx(before + 15)


def test_client_disconnect_mid_stream(server):
  host, port = server.server_address[:2]
  for _ in range(3):
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"multipart/x-mixed-replace" in sock.recv(4096)
    sock.close()  # vanish mid-stream
  # A half-sent request, then gone.
  sock = socket.create_connection((host, port), timeout=10)
  sock.sendall(b"POST /command HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"comm")
  sock.close()
  time.sleep(1.0)
  st = _wait_for(server, lambda s: True, "state")
  f0 = st["frame"]
  _wait_for(server, lambda s: s["frame"] > f0, "frames after the disconnects")
  assert _get(server, "/")[0] == 200


def test_stream_outlives_the_unlimited_cache(server):
  # student:tiny has window_chunks=0 and a 4-chunk cache (max_frames=12, 3 pairs a chunk):
  # serve streams it with a rolling window, so chunk 5 and later are generated.
  assert server.worker.m.config.student.window_chunks == 2
  st = _wait_for(server, lambda s: s["chunks_done"] >= 6, "six chunks")
  assert st["running"] and st["error"] is None


def test_endless_window():
  from realcam_jax.config import get_config
  from realcam_jax.cli import UserError
  cfg = get_config("student:tiny", [])
  assert cfg.student.window_chunks == 0
  out = serve_cli.endless_window(cfg, out=open(os.devnull, "w"))
  assert (out.student.sink_chunks, out.student.window_chunks) == (1, 2)
  assert cfg.student.window_chunks == 0                  # the caller's config is untouched
  windowed = get_config("student:tiny", ["--config.student.window_chunks=3"])
  assert serve_cli.endless_window(windowed) is windowed
  short = get_config("student:tiny", ["--config.student.max_frames=6"])
  with pytest.raises(UserError, match="student.window_chunks=W"):
    serve_cli.endless_window(short)


def test_stop_start_restart_and_switch(server):
  assert _post(server, "/control", {"action": "stop"})[1]["running"] is False
  f0 = _state(server)["frame"]
  time.sleep(1.5)
  assert _state(server)["frame"] <= f0 + 24  # at most the chunks already generated
  assert _post(server, "/control", {"action": "start"})[1]["running"] is True
  assert _post(server, "/control", {"action": "jump"})[0] == 400
  status, err = _post(server, "/video", {"source": "/etc/passwd"})
  assert status == 400 and "unknown source" in err["error"]
  _post(server, "/command", {"command": "pan 20"})
  status, st = _post(server, "/video", {"source": "synthetic"})
  assert status == 200 and st["source"] == "synthetic" and st["frame"] == 0
  assert st["camera"]["target"]["yaw_deg"] == pytest.approx(0.0)  # a new stream
  _wait_for(server, lambda s: s["frame"] > 3, "frames of the new source")
  status, st = _post(server, "/control", {"action": "restart"})
  assert status == 200 and st["frame"] == 0 and st["running"]
  _wait_for(server, lambda s: s["frame"] > 3, "frames after restart")


# ----------------------------------------------------------------------------- browser
class _DevTools:
  """Minimal Chrome DevTools protocol client over --remote-debugging-pipe (fds 3 and 4)."""

  def __init__(self, url):
    self.tmp = tempfile.mkdtemp(prefix="realcam-chromium-")
    to_chrome_r, self._w = os.pipe()
    self._r, from_chrome_w = os.pipe()
    # Chromium reads commands on fd 3 and writes replies on fd 4; bash maps the pipes
    # there (no preexec_fn: forking a multithreaded process must not run Python code).
    self.proc = subprocess.Popen(
        ["bash", "-c", f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', CHROMIUM,
         "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={self.tmp}", "--remote-debugging-pipe",
         "about:blank"],
        pass_fds=(to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    self._id, self._buf = 0, b""
    target = self.call("Target.createTarget", url=url)["targetId"]
    self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

  def call(self, method, session=None, **params):
    self._id += 1
    msg = {"id": self._id, "method": method, "params": params}
    if session:
      msg["sessionId"] = session
    os.write(self._w, json.dumps(msg).encode() + b"\0")
    while True:
      while b"\0" not in self._buf:
        chunk = os.read(self._r, 1 << 16)
        if not chunk:
          raise RuntimeError("chromium closed the DevTools pipe")
        self._buf += chunk
      raw, self._buf = self._buf.split(b"\0", 1)
      reply = json.loads(raw)
      if reply.get("id") == self._id:
        if "error" in reply:
          raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

  def js(self, expression):
    r = self.call("Runtime.evaluate", self.session, expression=expression, returnByValue=True,
                  awaitPromise=True)
    if "exceptionDetails" in r:
      raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
    return r["result"].get("value")

  def key(self, key, code=None, vk=None):
    for kind in ("keyDown", "keyUp"):
      self.call("Input.dispatchKeyEvent", self.session, type=kind, key=key, code=code or key,
                windowsVirtualKeyCode=vk or 0)

  def close(self):
    self.proc.kill()
    self.proc.wait()
    os.close(self._w)
    os.close(self._r)
    shutil.rmtree(self.tmp, ignore_errors=True)


_IMAGE_HASH = """(() => { const img = document.getElementById('view');
  const c = document.createElement('canvas'); c.width = img.naturalWidth;
  c.height = img.naturalHeight; const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; let h = 0;
  for (let i = 0; i < d.length; i++) h = (h * 31 + d[i]) % 1000000007; return h; })()"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_browser_key_moves_camera_and_frames_change(server):
  _wait_for(server, lambda s: s["chunks_done"] >= 2, "two chunks")
  browser = _DevTools(server.url)
  try:
    def wait_js(expr, what, timeout=120):
      t0 = time.time()
      while time.time() - t0 < timeout:
        try:
          value = browser.js(expr)
        except RuntimeError:                 # the page is still loading
          value = None
        if value:
          return value
        time.sleep(0.25)
      raise AssertionError(f"browser: timed out waiting for {what}")

    wait_js("document.getElementById('pose').textContent.startsWith('yaw')", "the pose")
    pose0 = browser.js("document.getElementById('pose').textContent")
    yaw0 = _state(server)["camera"]["target"]["yaw_deg"]
    frame0 = int(browser.js("document.getElementById('frame').textContent"))
    hash0 = browser.js(_IMAGE_HASH)
    browser.key("ArrowRight", vk=39)
    wait_js(f"document.getElementById('pose').textContent !== {json.dumps(pose0)}",
            "the displayed pose to change")
    assert _state(server)["camera"]["target"]["yaw_deg"] == pytest.approx(yaw0 + 5)
    wait_js(f"+document.getElementById('frame').textContent > {frame0}", "the frame counter")
    wait_js(f"{_IMAGE_HASH} !== {hash0}", "the displayed frame to change")
    assert browser.js("document.getElementById('error').textContent") == ""
  finally:
    browser.close()
