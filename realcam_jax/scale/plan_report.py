"""Runs the full-size memory plan (`memory_plan`) over mesh shapes and remat policies and
writes the tables of docs/scaling.md. Driven by `launch/plan_memory.py`."""

from __future__ import annotations

import dataclasses
import datetime
import platform
import sys
from typing import Any, Sequence

from realcam_jax.scale import memory_plan as mp
from realcam_jax.scale.blockwise_attention import DEFAULT_BLOCK, fit_block

# Cheapest recompute first: what the recommendation prefers when several fit.
REMAT_ORDER = ("none", "dots_with_no_batch_dims_saveable", "dots_saveable", "full")


def _log(msg: str):
  print(msg, file=sys.stderr, flush=True)


def run_plan(config, *, contexts: Sequence[int], remats: Sequence[str], devices: int,
             chip_counts: Sequence[int], fsdp_check: Sequence[int] = (),
             dense_check: bool = False, samples: int = 1) -> dict[str, Any]:
  """Measures everything the report needs. `config` is the teacher config at full size."""
  base = mp.plan_config(config, remat="full")
  res: dict[str, Any] = dict(
      config=config.model.size, tokens=mp.tokens_per_sample(base), layers=base.model.num_layers,
      dtype=base.model.dtype, param_dtype=base.model.param_dtype,
      attention=f"blockwise (key block {fit_block(mp.tokens_per_sample(base), DEFAULT_BLOCK)})",
      devices=devices, global_batch=int(config.train.batch_size), samples=int(samples),
      latent=(int(config.data.latent_frames), int(config.data.latent_height),
              int(config.data.latent_width)), heads=int(config.model.num_heads),
      date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
      machine=f"{platform.node()} ({platform.processor() or platform.machine()}, "
              f"{_cpu_count()} CPUs), jax {_jax_version()}")
  res["num_params"] = mp.state_bytes(base, mp.MeshShape(fsdp=1))["num_params"]
  _log("saved residuals per sample ...")
  res["residuals"] = {r: mp.saved_residuals(mp.plan_config(config, remat=r)) for r in remats}
  _log("state bytes per device (eval_shape) ...")
  res["state"] = {n: mp.state_bytes(base, mp.MeshShape(fsdp=n)) for n in chip_counts}
  res["dmd_state"] = {n: mp.dmd_state_bytes(base, mp.MeshShape(fsdp=n)) for n in chip_counts}
  res["compiled"] = []
  for c in contexts:
    shape = mp.MeshShape(fsdp=devices // c, context=c)
    for r in remats:
      _log(f"compile {shape.label()} remat={r} ...")
      cfg = mp.plan_config(config, remat=r)
      out = mp.compiled_step(cfg, shape, samples_per_shard=samples)
      out.update(context=c, remat=r, mesh=shape.label(), state=mp.state_bytes(cfg, shape))
      res["compiled"].append(out)
      _log(f"  total {out['total'] / mp.GB:.1f} GB, compile {out['compile_s']:.0f} s")
  res["fsdp_check"] = []
  for n in fsdp_check:
    shape = mp.MeshShape(fsdp=n)
    _log(f"compile {shape.label()} remat=full (fsdp-independence check) ...")
    out = mp.compiled_step(base, shape, samples_per_shard=samples)
    out.update(mesh=shape.label(), state=mp.state_bytes(base, shape))
    res["fsdp_check"].append(out)
  if dense_check:
    _log("compile fsdp=8 remat=full with dense dot_product attention ...")
    cfg = mp.plan_config(config, remat="full", attention_impl="dot_product")
    out = mp.compiled_step(cfg, mp.MeshShape(fsdp=devices), samples_per_shard=samples)
    shape = mp.MeshShape(fsdp=devices)
    out.update(mesh=shape.label(), state=mp.state_bytes(cfg, shape))
    res["dense"] = out
  res["targets"] = _targets(res, base, chip_counts)
  return res


def _cpu_count():
  import os
  return os.cpu_count()


def _jax_version():
  import jax
  return jax.__version__


def _targets(res, config, chip_counts):
  """Per-device totals at larger slices (`samples` per batch shard)."""
  rows = []
  for m in res["compiled"]:
    c = m["context"]
    for n in chip_counts:
      if n < c:
        continue
      target = mp.MeshShape(fsdp=n // c, context=c)
      st = mp.state_bytes(config, target)
      rows.append(dict(chips=n, context=c, remat=m["remat"], mesh=target.label(),
                       global_batch=target.batch_shards * res.get("samples", 1),
                       total=mp.extend(m["total"], mp.teacher_state_total(m["state"]),
                                       mp.teacher_state_total(st)),
                       state=mp.teacher_state_total(st)))
  return rows


def _recommend(res) -> dict[str, Any]:
  """Per chip type: the smallest context axis, then the cheapest remat policy, whose
  compiled total fits; the slice that holds the config's global batch with it."""
  n = res.get("samples", 1)
  out = {}
  for chip in mp.HBM_GB:
    out[chip] = None
    for m in sorted(res["compiled"], key=lambda m: (m["context"], REMAT_ORDER.index(m["remat"])
                                                    if m["remat"] in REMAT_ORDER else 9)):
      if not mp.fits(m["total"], chip):
        continue
      c = m["context"]
      chips = max(res["global_batch"] * c // n, c)
      total = next((t["total"] for t in res["targets"] if t["chips"] == chips and
                    t["context"] == c and t["remat"] == m["remat"]), m["total"])
      out[chip] = dict(context=c, remat=m["remat"], chips=chips, total=total,
                       mesh=mp.MeshShape(fsdp=chips // c, context=c).label(),
                       slice=(f"v5p-{2 * chips}" if chip == "v5p" else f"v6e-{chips}"))
      break
  return out


def _gb(x) -> str:
  return f"{x / mp.GB:,.2f}"


def to_markdown(res: dict[str, Any], command: str) -> str:
  """The tables of docs/scaling.md."""
  L = []
  add = L.append
  add(f"Produced by `{command}` on {res['machine']}, {res['date']}.\n")
  f, h, w = res["latent"]
  samples = res.get("samples", 1)
  add(f"Model `{res['config']}`: {res['num_params'] / 1e9:.3f} B parameters, {res['layers']} "
      f"layers; one sample = {res['tokens']:,} tokens ({f} source + {f} target latent frames of "
      f"{h}x{w}, patch 1x2x2); activations {res['dtype']}, parameters and AdamW moments "
      f"{res['param_dtype']}; attention {res['attention']}. GB = 1e9 bytes.\n")
  add("### 1. Parameters, optimizer state and gradients per device (eval_shape)\n")
  add("Sharded over `fsdp` by the rules table (`realcam_jax/sharding.py`); "
      "the context axis does not shard them.\n")
  add("| fsdp | params | AdamW (mu, nu) | grads | teacher total "
      "| DMD total (gen + EMA + critic + frozen teacher) |")
  add("|---:|---:|---:|---:|---:|---:|")
  for n, s in res["state"].items():
    add(f"| {n} | {_gb(s['params'])} | {_gb(s['opt_state'])} | {_gb(s['grads'])} | "
        f"{_gb(s['params'] + s['opt_state'] + s['grads'])} | {_gb(res['dmd_state'][n]['total'])} |")
  add("\n### 2. Activations saved for the backward pass, per sample (JAX residuals)\n")
  add("`jax.ad_checkpoint.print_saved_residuals` of the teacher loss: what autodiff keeps "
      "between forward and backward, before XLA; backend-independent. All of it is "
      "proportional to the token count, so a context axis of size c divides it by c.\n")
  add("| remat policy | saved per sample | largest residual |")
  add("|---|---:|---|")
  for r, v in res["residuals"].items():
    big = v["largest"][0][1].split(" from ")[0] if v["largest"] else ""
    add(f"| {r} | {_gb(v['total'])} | `{big}` |")
  add(f"\n### 3. Compiled teacher train step per device ({res['devices']} fake CPU devices)\n")
  add("`jax.jit(step).lower(...).compile().memory_analysis()` of the real train step (loss, "
      f"gradient, AdamW update, state donated), all {res['layers']} layers (a `lax.scan`, "
      f"so compile time does not grow with depth), {samples} sample(s) per batch shard. temp = "
      "activations + gradients + workspace; total = arguments + outputs - aliased + temp. "
      "XLA:CPU upcasts bf16 matmuls to f32, so temp is an upper bound for TPU.\n")
  add("| mesh | remat | state + batch (args) | temp | activations + workspace | total "
      "| compile s |")
  add("|---|---|---:|---:|---:|---:|---:|")
  for m in res["compiled"]:
    act = m["temp"] - m["state"]["grads"]
    add(f"| {m['mesh']} | {m['remat']} | {_gb(m['argument'])} | {_gb(m['temp'])} | {_gb(act)} | "
        f"**{_gb(m['total'])}** | {m['compile_s']:.0f} |")
  if res.get("fsdp_check"):
    add("\nCheck that activations + workspace do not depend on the fsdp size (remat full, "
        f"context 1, {samples} sample(s) per device):\n")
    add("| mesh | temp | grads shard | activations + workspace | total |")
    add("|---|---:|---:|---:|---:|")
    for m in res["fsdp_check"] + [x for x in res["compiled"]
                                  if x["context"] == 1 and x["remat"] == "full"]:
      add(f"| {m['mesh']} | {_gb(m['temp'])} | {_gb(m['state']['grads'])} | "
          f"{_gb(m['temp'] - m['state']['grads'])} | {_gb(m['total'])} |")
  if res.get("dense"):
    m = res["dense"]
    add(f"\nThe same step with the dense reference attention (`dot_product`, {m['mesh']}, remat "
        f"full) needs **{_gb(m['total'])} GB** per device (the [{res['heads']}, T, T] f32 scores "
        "of one layer): long sequences need the blockwise/flash attention.\n")
  add("\n### 4. Per-device totals on larger slices\n")
  add("State and gradient shards from eval_shape at the target fsdp size, activations + "
      f"workspace from table 3 ({samples} sample(s) per batch shard, so the global batch is "
      f"{samples} x chips / context). Each cell: GB per chip, and the chips it fits (total "
      "at most 90% of the HBM: v5p 95 GB, v6e 32 GB).\n")
  remats = list(dict.fromkeys(t["remat"] for t in res["targets"]))
  add("| chips | mesh | global batch | " + " | ".join(remats) + " |")
  add("|---:|---|---:|" + "---:|" * len(remats))
  cells: dict = {}
  for t in res["targets"]:
    cells.setdefault((t["chips"], t["context"], t["mesh"], t["global_batch"]), {})[t["remat"]] = \
        t["total"]
  for (chips, _, mesh, gb), by_remat in sorted(cells.items()):
    row = []
    for r in remats:
      total = by_remat.get(r)
      fit = [chip for chip in mp.HBM_GB if total is not None and mp.fits(total, chip)]
      row.append("" if total is None else f"{_gb(total)} ({', '.join(fit) or '-'})")
    add(f"| {chips} | {mesh} | {gb} | " + " | ".join(row) + " |")
  add("\n### 5. Recommendation (computed from table 3)\n")
  for chip, rec in _recommend(res).items():
    if rec is None:
      add(f"- **{chip}**: no measured configuration fits; use a larger context axis.")
      continue
    add(f"- **{chip}** ({mp.HBM_GB[chip]:.0f} GB): context {rec['context']}, remat "
        f"`{rec['remat']}`, {samples} sample(s) per batch shard: for the config's global "
        f"batch of {res['global_batch']}, {rec['chips']} chips ({_gb(rec['total'])} GB per chip) "
        f"(`{rec['slice']}`), mesh {rec['mesh']}, `--config.mesh.rules="
        f"{'context' if rec['context'] > 1 else 'default'}`.")
  return "\n".join(L) + "\n"


def run_dmd_plan(config, *, contexts: Sequence[int], remats: Sequence[str], devices: int,
                 chip_counts: Sequence[int]) -> dict[str, Any]:
  """Compiles the DMD critic and generator iterations (student config at full size)."""
  base = mp.plan_config(config, remat="full")
  s = config.student
  res: dict[str, Any] = dict(
      config=config.model.size, devices=devices, global_batch=int(config.train.batch_size),
      tokens=mp.tokens_per_sample(base), chunk_pairs=int(s.chunk_pairs),
      levels=len(s.timesteps), real_cfg=float(s.real_cfg),
      date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
      machine=f"{platform.node()} ({platform.processor() or platform.machine()}, "
              f"{_cpu_count()} CPUs), jax {_jax_version()}")
  res["state"] = {n: mp.dmd_state_bytes(base, mp.MeshShape(fsdp=n)) for n in chip_counts}
  res["compiled"] = []
  for c in contexts:
    shape = mp.MeshShape(fsdp=devices // c, context=c)
    for r in remats:
      _log(f"compile DMD iterations {shape.label()} remat={r} ...")
      cfg = mp.plan_config(config, remat=r)
      out = mp.compiled_dmd(cfg, shape)
      state = mp.dmd_state_bytes(cfg, shape)
      for name, m in out.items():
        m.update(iteration=name, context=c, remat=r, mesh=shape.label(), state=state["total"])
        res["compiled"].append(m)
        _log(f"  {name}: total {m['total'] / mp.GB:.1f} GB, compile {m['compile_s']:.0f} s")
  rows = []
  for m in res["compiled"]:
    for n in chip_counts:
      if n < m["context"]:
        continue
      target = mp.MeshShape(fsdp=n // m["context"], context=m["context"])
      st = mp.dmd_state_bytes(base, target)["total"]
      rows.append(dict(chips=n, mesh=target.label(), remat=m["remat"], context=m["context"],
                       iteration=m["iteration"], global_batch=target.batch_shards,
                       total=mp.extend(m["total"], m["state"], st)))
  res["targets"] = rows
  return res


def dmd_markdown(res: dict[str, Any], command: str) -> str:
  """The DMD tables of docs/scaling.md."""
  L = []
  add = L.append
  add(f"Produced by `{command}` on {res['machine']}, {res['date']}.\n")
  add(f"Student `{res['config']}` (teacher architecture), {res['tokens']:,} tokens per clip, "
      f"chunks of {res['chunk_pairs']} frame pairs, {res['levels']} denoising levels, teacher "
      f"CFG {res['real_cfg']} (conditional and unconditional branches as one batch of 2). "
      "Arguments: DMD state (generator, critic, AdamW of both, fp32 EMA; donated), the "
      "frozen teacher's params and the batch. The critic iteration runs a no-grad "
      "Self-Forcing rollout and a flow-matching step of the critic; the generator iteration "
      "the two-phase rollout with gradient through the exit step, teacher (CFG) and critic "
      "forwards and the generator's AdamW + EMA update.\n")
  add("State per device (eval_shape; gradients of one model at a time):\n")
  add("| fsdp | generator + EMA | critic | AdamW (both) | frozen teacher | grads | total |")
  add("|---:|---:|---:|---:|---:|---:|---:|")
  for n, s in res["state"].items():
    add(f"| {n} | {_gb(s['generator'] + s['generator_ema'])} | {_gb(s['critic'])} | "
        f"{_gb(s['generator_opt'] + s['critic_opt'])} | {_gb(s['teacher'])} | {_gb(s['grads'])} | "
        f"{_gb(s['total'])} |")
  add(f"\nCompiled per device ({res['devices']} fake CPU devices, 1 sample per batch shard):\n")
  add("| mesh | remat | iteration | args | temp | total | compile s |")
  add("|---|---|---|---:|---:|---:|---:|")
  for m in res["compiled"]:
    add(f"| {m['mesh']} | {m['remat']} | {m['iteration']} | {_gb(m['argument'])} | "
        f"{_gb(m['temp'])} | **{_gb(m['total'])}** | {m['compile_s']:.0f} |")
  add("\nPer-device totals on larger slices (the larger of the two iterations):\n")
  add("| chips | mesh | remat | global batch | total | v5p | v6e |")
  add("|---:|---|---|---:|---:|:-:|:-:|")
  best: dict = {}
  for t in res["targets"]:
    k = (t["chips"], t["mesh"], t["remat"])
    best[k] = max(best.get(k, (0, t))[0], t["total"]), t
  for (chips, mesh, remat), (total, t) in sorted(best.items()):
    ok = lambda chip: "yes" if mp.fits(total, chip) else "no"
    add(f"| {chips} | {mesh} | {remat} | {t['global_batch']} | {_gb(total)} | {ok('v5p')} | "
        f"{ok('v6e')} |")
  add("\nRecommendation (computed: the smallest context axis whose larger iteration fits):\n")
  worst: dict = {}
  for m in res["compiled"]:
    k = (m["context"], m["remat"])
    worst[k] = max(worst.get(k, 0), m["total"])
  for chip in mp.HBM_GB:
    fit = [k for k in sorted(worst) if mp.fits(worst[k], chip)]
    if not fit:
      add(f"- **{chip}**: none of the measured meshes fits.")
      continue
    c, r = fit[0]
    chips = res["global_batch"] * c
    name = f"v5p-{2 * chips}" if chip == "v5p" else f"v6e-{chips}"
    add(f"- **{chip}**: context {c}, remat `{r}` ({_gb(worst[(c, r)])} GB per chip); the "
        f"config's global batch of {res['global_batch']} takes {chips} chips (`{name}`).")
  return "\n".join(L) + "\n"


def to_json(res: dict[str, Any]) -> dict[str, Any]:
  """JSON-safe copy (keys as strings)."""
  import json
  return json.loads(json.dumps(res, default=lambda o: dataclasses.asdict(o)
                               if dataclasses.is_dataclass(o) else str(o)))


def from_json(raw: dict[str, Any]) -> dict[str, Any]:
  """Results as written by `launch/plan_memory.py --json` -> {"teacher": ..., "dmd": ...}
  with integer keys restored (a bare teacher result is accepted too)."""
  if "compiled" in raw and "residuals" in raw:
    raw = {"teacher": raw}
  for res in raw.values():
    for key in ("state", "dmd_state"):
      if key in res:
        res[key] = {int(k): v for k, v in res[key].items()}
  return raw
