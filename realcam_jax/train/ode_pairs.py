"""Teacher ODE pairs for the student's ODE init, computed once (stage 'ode_pairs').

`ode_init` regresses the causal student on teacher ODE trajectories. Computing them
inside every training step (`student.ode_steps` Euler steps with CFG over the whole
batch) dominates its cost; CausVid precomputes them once. With `student.ode_pairs = N`
(> 0) this stage runs the frozen teacher (`ode_init.load_teacher_params`, from
`student.teacher_ckpt`) over the first N examples of the training stream
(`data.make_iterator`, LoopAug mixed in per `data.loopaug_fraction`) with
`ode_init.ode_targets`, and `ode_init` then reads the stored pairs
(`make_iterator`) instead of calling the teacher. N = 0 keeps the online behaviour
(and this stage does nothing).

On disk (the stage's workdir; `WORKDIR/ode_pairs` in a multi-stage run):
  meta.json        the settings that determine the pairs (`pair_settings`)
  shard_00000/     examples [0, S), S = student.ode_pairs_shard; one .npy per key:
    source_latents f32[S, F, h, w, C]  target_poses f32[S, F, 4, 4]  intrinsics f32[S, 3, 3]
    source_poses f32[S, F, 4, 4], text f32[S, Lt, Dt]   (when the data carries them)
    ode_latents f32[S, n, F, h, w, C]  the trajectory at the n kept levels
                                       (`ode_init.trajectory_levels`)
    ode_x0 f32[S, F, h, w, C]          the trajectory's end
  shard_00001/ ...                     (the last shard holds the remaining N mod S)
A shard is written under a temporary name and renamed when complete, so a killed run
leaves only whole shards; running the stage again skips them and computes the rest
(bit-identical to an uninterrupted run). Pairs made with other settings are refused,
both here and by the reader.

Example e is row e mod B of the global batch e // B of the data stream
(B = train.batch_size, which must divide S); that batch's trajectory noise comes from
`batch_key(config, e // B)`. Several processes: every process computes its rows, the
main one writes (the directory must be shared, as for checkpoints).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from realcam_jax import sharding
from realcam_jax.atomic import atomic_dir, atomic_file, remove_partial
from realcam_jax.config import to_json
from realcam_jax.scale import multihost
from realcam_jax.train import common, data, loop, ode_init, rollout

META_FILE = "meta.json"
FORMAT = 1
# Batch keys the student's conditioning reads (`rollout.conditions`; source poses kept
# for conditioning variants that use them), stored when the data carries them.
COND_KEYS = ("source_latents", "source_poses", "target_poses", "intrinsics", "text")
UNCOND_KEY = "text_uncond"   # the empty prompt's encoding: read by the teacher's CFG, not stored
PAIR_KEYS = ("ode_latents", "ode_x0")
_KEY_SALT = 0x0DE0                # separates the pairs' noise from the training keys
_RUNTIME_DATA_FIELDS = ("num_workers",)   # data fields that do not change the examples


class OdePairsError(ValueError):
  """Stored ODE pairs are missing, incomplete, or made with other settings."""


# ----------------------------------------------------------------------------- settings

def pair_settings(config) -> dict:
  """The config fields that determine the stored pairs (written to meta.json)."""
  s = config.student
  idx, sig = ode_init.trajectory_levels(config)
  teacher = os.path.abspath(s.teacher_ckpt) if s.teacher_ckpt else ""
  d = {k: v for k, v in json.loads(to_json(config.data)).items()
       if k not in _RUNTIME_DATA_FIELDS}
  out = dict(
      format=FORMAT, count=int(s.ode_pairs), shard_size=int(s.ode_pairs_shard),
      batch_size=int(config.train.batch_size), seed=int(config.seed),
      ode_steps=int(s.ode_steps), ode_shift=float(s.ode_shift), ode_cfg=float(s.ode_cfg),
      student_timesteps=[float(t) for t in s.timesteps], student_shift=float(s.shift),
      level_indices=[int(i) for i in idx], level_sigmas=[float(x) for x in sig],
      teacher_ckpt=teacher,
      teacher_seed=None if teacher else int(config.teacher.get("seed", config.seed)),
      data=d)
  return json.loads(json.dumps(out))          # the form it has after a round trip


def check_settings(config) -> dict:
  """`pair_settings` after checking the shard layout; raises OdePairsError."""
  settings = pair_settings(config)
  n, size, batch = settings["count"], settings["shard_size"], settings["batch_size"]
  if n <= 0:
    raise OdePairsError(f"student.ode_pairs={n}: stored ODE pairs are off (0 = the teacher "
                        "runs inside every ode_init step)")
  if size <= 0 or size % batch:
    raise OdePairsError(f"student.ode_pairs_shard={size} must be a positive multiple of "
                        f"train.batch_size={batch} (a shard holds whole teacher batches)")
  return settings


def num_shards(settings: dict) -> int:
  return math.ceil(settings["count"] / settings["shard_size"])


def shard_path(root: str, index: int) -> str:
  return os.path.join(root, f"shard_{index:05d}")


def pairs_dir(config, workdir: str) -> str:
  """Where ode_init finds the pairs: `student.ode_pairs_dir`, else the sibling
  `ode_pairs` of its workdir (`WORKDIR/ode_pairs` next to `WORKDIR/ode_init`)."""
  path = config.student.get("ode_pairs_dir", "")
  return os.path.abspath(path or os.path.join(os.path.dirname(os.path.abspath(workdir)),
                                              "ode_pairs"))


def _differences(stored: dict, wanted: dict) -> list[str]:
  keys = sorted(set(stored) | set(wanted))
  return [f"{k}: stored {stored.get(k)!r}, config {wanted.get(k)!r}"
          for k in keys if stored.get(k) != wanted.get(k)]


def read_meta(root: str) -> dict | None:
  path = os.path.join(root, META_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def check_meta(root: str, settings: dict):
  """Raises OdePairsError when `root` holds pairs made with other settings."""
  stored = read_meta(root)
  if stored is None:
    return
  diff = _differences(stored, settings)
  if diff:
    raise OdePairsError(
        f"the ODE pairs in {root!r} were made with other settings than this config:\n  "
        + "\n  ".join(diff) + f"\nShards of different settings cannot be mixed: delete {root!r} "
        "to recompute them, point student.ode_pairs_dir elsewhere, or set the config back.")


def _write_meta(root: str, settings: dict):
  text = json.dumps(settings, indent=2, sort_keys=True)
  atomic_file(os.path.join(root, META_FILE), lambda f: f.write(text.encode()))


def write_shard(root: str, index: int, arrays: dict):
  """Writes one shard's arrays (numpy, examples on axis 0) atomically (temp dir + rename)."""
  with atomic_dir(shard_path(root, index)) as tmp:
    for name, value in arrays.items():
      np.save(os.path.join(tmp, name + ".npy"), np.asarray(value))


# ----------------------------------------------------------------------------- generation

def batch_key(config, index) -> jax.Array:
  """Trajectory noise key of global batch `index` of the pair stream (traceable)."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), _KEY_SALT), index)


def make_generate(graphdef, config):
  """gen(teacher_params, batch, index) -> {ode_latents f32[B, n, F, h, w, C],
  ode_x0 f32[B, F, h, w, C]}: `ode_init.ode_targets` with `batch_key(config, index)`."""
  def gen(teacher_params, batch: dict, index):
    teacher = nnx.merge(graphdef, teacher_params)
    source, camera, text, anchor = rollout.conditions(config, batch)
    latents, _, x0 = ode_init.ode_targets(teacher, config, source, camera, text,
                                          batch_key(config, index), batch.get("text_uncond"),
                                          anchor)
    return dict(ode_latents=jnp.moveaxis(latents, 0, 1), ode_x0=x0)
  return gen


def _conditioning(batch: dict) -> dict:
  return {k: batch[k] for k in COND_KEYS + (UNCOND_KEY,) if k in batch}


def _compile_generate(graphdef, config, mesh, param_sh, batch: dict):
  batch_sh = jax.tree.map(lambda x: sharding.batch_sharding(mesh, x.ndim), batch)
  out_sh = dict(ode_latents=sharding.batch_sharding(mesh, 6),    # [B, n, F, h, w, C]
                ode_x0=sharding.batch_sharding(mesh, 5))
  return jax.jit(make_generate(graphdef, config),
                 in_shardings=(param_sh, batch_sh, sharding.replicated(mesh)),
                 out_shardings=out_sh)


def generate(config, root: str) -> dict:
  """Computes every missing shard of `root` (see module docstring).

  Returns {"stopped_by_signal": bool, "last_step": examples stored, "seconds_per_example":
  the rate of this run (compile included), or None when nothing was computed}.
  """
  settings = check_settings(config)
  root = os.path.abspath(root)
  check_meta(root, settings)
  if multihost.is_main_process():
    _write_meta(root, settings)
    remove_partial(root)              # a shard being written when the last run was killed
  count, size, batch = settings["count"], settings["shard_size"], settings["batch_size"]
  shards = num_shards(settings)
  done = [os.path.isdir(shard_path(root, i)) for i in range(shards)]
  rows = lambda i: min(size, count - i * size)  # noqa: E731
  info = {"stopped_by_signal": False, "last_step": count, "seconds_per_example": None}
  if all(done):
    return info
  mesh = sharding.make_mesh(config.mesh)
  rules = sharding.rules_for(config.mesh.get("rules", "default"))
  multihost.check_batch_layout(mesh, batch, rules)
  graphdef, abs_params, param_sh = ode_init.abstract_params(config, mesh)
  teacher_params = ode_init.load_teacher_params(config, abs_params, param_sh)
  data_iter = data.make_iterator(config)
  stored = sum(rows(i) for i in range(shards) if done[i])
  bar = common.progress(count, stored, "ode_pairs")
  gen, t0, computed = None, time.time(), 0
  with jax.set_mesh(mesh), sharding.use_rules(rules), multihost.StopRequest() as stop:
    try:
      for i in range(shards):
        n_batches = math.ceil(rows(i) / batch)
        if done[i]:
          for _ in range(n_batches):          # keep the stream aligned with the shard
            next(data_iter)
          continue
        parts = []
        for j in range(n_batches):
          b = loop.to_global(_conditioning(next(data_iter)), mesh)
          if gen is None:
            gen = _compile_generate(graphdef, config, mesh, param_sh, b)
            if jax.process_count() > 1:   # start together (see `train.loop`)
              gen.lower(teacher_params, b, jnp.asarray(0, jnp.int32)).compile()
              multihost.barrier(f"realcam_ode_pairs_first_batch_{stored}")
          out = gen(teacher_params, b, jnp.asarray(i * (size // batch) + j, jnp.int32))
          kept_keys = {k: v for k, v in b.items() if k != UNCOND_KEY}
          parts.append(multihost.gather(dict(kept_keys, **out)))
          kept = min(batch, rows(i) - j * batch)
          computed += kept
          bar.update(kept)
        if multihost.is_main_process():
          write_shard(root, i, {k: np.concatenate([p[k] for p in parts])[:rows(i)]
                                for k in parts[0]})
        stored += rows(i)
        if stop.should_stop(i):
          info["stopped_by_signal"] = True
          bar.write(f"received signal {stop.signal}: {stored} of {count} ODE pairs stored "
                    "(whole shards); run the same command to compute the rest")
          break
    finally:
      bar.close()
  info["last_step"] = stored
  info["seconds_per_example"] = (time.time() - t0) / max(computed, 1)
  logging.info("ode_pairs: %d examples in %s, %.2f s per example", computed, root,
               info["seconds_per_example"])
  return info


def run(config, workdir: str, num_steps: int | None = None):
  """Stage entry point (`train.run`): fills `student.ode_pairs_dir` (default: `workdir`)
  with the pairs; returns (None, None, info).

  `num_steps` is ignored (the size is `student.ode_pairs`); does nothing when that is 0.
  """
  del num_steps
  if int(config.student.get("ode_pairs", 0)) <= 0:
    return None, None, {"stopped_by_signal": False, "last_step": 0}
  return None, None, generate(config, config.student.get("ode_pairs_dir", "") or workdir)


# ----------------------------------------------------------------------------- reading

class PairSource:
  """Random access to the stored examples (memory-mapped): `len(src)`, `src[i]` -> dict."""

  def __init__(self, config, root: str):
    settings = check_settings(config)
    root = os.path.abspath(root)
    if read_meta(root) is None:
      raise OdePairsError(
          f"no ODE pairs in {root!r} ({META_FILE} missing): run the 'ode_pairs' stage first "
          "(launch/train.py runs config.stages in order), or set student.ode_pairs=0 to let "
          "the teacher run inside every ode_init step")
    check_meta(root, settings)
    n = num_shards(settings)
    missing = [i for i in range(n) if not os.path.isdir(shard_path(root, i))]
    if missing:
      raise OdePairsError(
          f"{root!r} holds {n - len(missing)} of {n} ODE-pair shards (missing: {missing[:5]}"
          f"{' ...' if len(missing) > 5 else ''}); run the 'ode_pairs' stage again to finish them")
    self.count, self.shard_size = settings["count"], settings["shard_size"]
    self.shards = [self._open(shard_path(root, i)) for i in range(n)]

  @staticmethod
  def _open(path: str) -> dict:
    return {f[:-4]: np.load(os.path.join(path, f), mmap_mode="r")
            for f in sorted(os.listdir(path)) if f.endswith(".npy")}

  def __len__(self) -> int:
    return self.count

  def __getitem__(self, i: int) -> dict:
    shard = self.shards[i // self.shard_size]
    return {k: np.asarray(v[i % self.shard_size]) for k, v in shard.items()}


def make_iterator(config, root: str):
  """A checkpointable grain iterator of process-local batches of stored pairs: shuffled,
  repeated, each process its rows of the global batch (as `data.make_iterator`)."""
  source = PairSource(config, root)
  return data.sharded_batches(config, len(source), source.__getitem__, seed=config.seed + 2)
