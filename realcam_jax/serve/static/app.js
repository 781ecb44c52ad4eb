// RealCam live page: polls /frame.jpg and /state, sends camera commands (keys, buttons).
"use strict";
const $ = (id) => document.getElementById(id);
let keys = {}, modelFps = 15, shown = [], lastFrameHeader = null;

async function post(url, body) {
  const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                              body: JSON.stringify(body)});
  const data = await r.json();
  $("error").textContent = r.ok ? "" : (data.error || ("HTTP " + r.status));
  if (r.ok && data.camera) showState(data);
  return data;
}

const fmt = (x, d = 1) => (x === null || x === undefined) ? "-" : Number(x).toFixed(d);

function showState(s) {
  const p = s.camera.pose;
  $("pose").textContent = `yaw ${fmt(p.yaw_deg)}° pitch ${fmt(p.pitch_deg)}° roll ` +
      `${fmt(p.roll_deg)}° pos (${p.position.map((v) => fmt(v, 2)).join(", ")})`;
  $("mode").textContent = `${s.camera.label} (${s.camera.mode})` +
      (s.camera.holding_last_pose ? ", holding last pose" : "");
  $("frame").textContent = s.frame;
  $("status").textContent = s.error ? "error" : !s.running ? "stopped" :
      (s.compiling ? "compiling (first chunk)..." : "running") + ` — ${s.source}`;
  $("latency").textContent = s.latency_s === null ? "-" :
      `${fmt(s.latency_s * 1000, 0)} ms (first ${fmt(s.first_chunk_s, 1)} s)`;
  $("fps").textContent = s.gen_fps === null ? "-" : `${fmt(s.gen_fps)} (model ${s.model_fps})`;
  if (s.error) $("error").textContent = s.error;
  modelFps = s.model_fps;
  const sel = $("source");
  if (sel.options.length !== s.sources.length) {
    sel.innerHTML = "";
    for (const name of s.sources) sel.add(new Option(name, name));
  }
  if (document.activeElement !== sel) sel.value = s.source;
  if (Object.keys(keys).length === 0) setKeys(s.keys);
}

function setKeys(k) {
  keys = k;
  const box = $("buttons");
  for (const [key, cmd] of Object.entries(k)) {
    const b = document.createElement("button");
    b.textContent = `${cmd} [${key.replace("Arrow", "")}]`;
    b.onclick = () => post("/command", {command: cmd});
    box.appendChild(b);
  }
  $("keys").innerHTML = Object.entries(k).map(([key, cmd]) =>
      `<kbd>${key}</kbd> ${cmd}`).join(" · ");
}

async function pollState() {
  try {
    showState(await (await fetch("/state")).json());
    drawPath(await (await fetch("/path?count=60")).json());
  } catch (e) { $("status").textContent = "server unreachable"; }
  setTimeout(pollState, 500);
}

function drawPath(path) {
  const c = $("path"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const pts = path.positions;
  let r = 0.5;
  for (const p of pts) r = Math.max(r, Math.abs(p[0]), Math.abs(p[2]));
  const s = (c.width / 2 - 20) / r, cx = c.width / 2, cy = c.height / 2;
  const X = (p) => cx + p[0] * s, Y = (p) => cy - p[2] * s;
  g.strokeStyle = "#444"; g.beginPath();
  g.moveTo(0, cy); g.lineTo(c.width, cy); g.moveTo(cx, 0); g.lineTo(cx, c.height); g.stroke();
  g.strokeStyle = "#6cf"; g.beginPath();
  pts.forEach((p, i) => i ? g.lineTo(X(p), Y(p)) : g.moveTo(X(p), Y(p))); g.stroke();
  g.strokeStyle = "#fc6";
  pts.forEach((p, i) => {
    if (i % 10) return;
    const f = path.forward[i];
    g.beginPath(); g.moveTo(X(p), Y(p)); g.lineTo(X(p) + f[0] * 15, Y(p) - f[2] * 15); g.stroke();
  });
  g.fillStyle = "#f66"; g.beginPath(); g.arc(X(pts[0]), Y(pts[0]), 4, 0, 7); g.fill();
}

function pollFrame() {
  const img = new Image();
  img.onload = () => {
    $("view").src = img.src;
    const now = performance.now();
    shown.push(now); shown = shown.filter((t) => now - t < 2000);
    $("dispfps").textContent = fmt(shown.length / 2);
    setTimeout(pollFrame, 1000 / modelFps);
  };
  img.onerror = () => setTimeout(pollFrame, 1000);
  img.src = "/frame.jpg?view=both&t=" + Date.now();
}

document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
  if (keys[e.key] !== undefined || keys[e.key.toLowerCase()] !== undefined) {
    e.preventDefault();
    post("/command", {key: e.key});
  }
});
$("send").onclick = () => post("/command", {command: $("cmd").value});
$("cmd").addEventListener("keydown", (e) => { if (e.key === "Enter") $("send").click(); });
$("stop").onclick = () => post("/control", {action: "stop"});
$("start").onclick = () => post("/control", {action: "start"});
$("restart").onclick = () => post("/control", {action: "restart"});
$("switch").onclick = () => post("/video", {source: $("source").value});
pollState();
pollFrame();
