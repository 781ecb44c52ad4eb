"""Stored teacher ODE pairs (stage ode_pairs) and ODE init trained on them (tiny config)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realcam_jax import sharding
from realcam_jax.config import get_config
from realcam_jax.train import data, ode_init, ode_pairs, rollout, run
from test_ode_init import perturbed_teacher_dir

COUNT = 16                # two shards of one tiny batch (8) each


@pytest.fixture(scope="module")
def config(tmp_path_factory):
  c = get_config("student:tiny")
  c.student.ode_pairs = COUNT
  c.student.ode_pairs_shard = 8
  c.student.teacher_ckpt = perturbed_teacher_dir(c, tmp_path_factory.mktemp("t") / "x")
  return c


@pytest.fixture(scope="module")
def pairs(config, tmp_path_factory):
  root = str(tmp_path_factory.mktemp("pairs") / "ode_pairs")
  info = ode_pairs.generate(config, root)
  assert info == dict(info, stopped_by_signal=False, last_step=COUNT)
  return root


@pytest.fixture(scope="module")
def teacher(config):
  mesh = sharding.make_mesh(config.mesh)
  graphdef, abs_params, param_sh = ode_init.abstract_params(config, mesh)
  return graphdef, ode_init.load_teacher_params(config, abs_params, param_sh)


def _files(root):
  out = {}
  for d, _, names in os.walk(root):
    for n in names:
      with open(os.path.join(d, n), "rb") as f:
        out[os.path.relpath(os.path.join(d, n), root)] = f.read()
  return out


def test_stored_pairs_equal_ode_targets(config, pairs, teacher):
  graphdef, params = teacher
  meta = json.load(open(os.path.join(pairs, ode_pairs.META_FILE)))
  assert (meta["count"], meta["ode_steps"], meta["ode_cfg"]) == (COUNT, 8, 5.0)
  assert meta["level_indices"] == ode_init.trajectory_levels(config)[0].tolist()
  def ode_targets(p, batch, key):
    src, cam, text, anchor = rollout.conditions(config, batch)
    return ode_init.ode_targets(nnx.merge(graphdef, p), config, src, cam, text, key,
                                anchor=anchor)

  targets = jax.jit(ode_targets)
  it = data.make_iterator(config)
  for b in range(COUNT // config.train.batch_size):      # shard b = batch b here
    batch = next(it)
    latents, sigmas, x0 = targets(params, batch, ode_pairs.batch_key(config, b))
    stored = ode_pairs.PairSource._open(ode_pairs.shard_path(pairs, b))
    assert set(stored) == {"source_latents", "target_poses", "intrinsics", "ode_latents",
                           "ode_x0"}
    for k in ("source_latents", "target_poses", "intrinsics"):
      np.testing.assert_array_equal(stored[k], batch[k])
    np.testing.assert_allclose(stored["ode_latents"], np.moveaxis(np.asarray(latents), 0, 1),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stored["ode_x0"], x0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sigmas, meta["level_sigmas"])
  assert float(np.std(stored["ode_x0"])) > 0


def test_pairs_loss_equals_online_loss(config, teacher):
  graphdef, params = teacher
  student = jax.tree.map(lambda x: x * 1.01, params)      # not the teacher itself
  batch = jax.tree.map(jnp.asarray, next(data.make_iterator(config)))
  key = jax.random.key(5)
  k_traj = jax.random.split(key)[0]                        # the trajectory key of loss_fn

  @jax.jit
  def both(student, teacher_params, batch):
    t = nnx.merge(graphdef, teacher_params)
    src, cam, text, anchor = rollout.conditions(config, batch)
    latents, _, x0 = ode_init.ode_targets(t, config, src, cam, text, k_traj, anchor=anchor)
    stored = dict(batch, ode_latents=jnp.moveaxis(latents, 0, 1), ode_x0=x0)
    del stored["target_latents"]
    online = ode_init.loss_fn(student, graphdef, teacher_params, config, batch, key)[0]
    return online, ode_init.pairs_loss_fn(student, graphdef, config, stored, key)[0]

  online, from_pairs = both(student, params, batch)
  assert float(online) > 0
  np.testing.assert_allclose(from_pairs, online, rtol=1e-5)


class _Killed(Exception):
  pass


def test_killed_then_resumed_generation_gives_the_same_files(config, pairs, tmp_path,
                                                             monkeypatch):
  root = str(tmp_path / "ode_pairs")
  write = ode_pairs.write_shard

  def killed_while_writing_shard_1(r, index, arrays):
    if index == 1:                     # a partial temp directory, then the process dies
      os.makedirs(os.path.join(r, ".shard_00001.tmp-dead"))
      open(os.path.join(r, ".shard_00001.tmp-dead", "ode_x0.npy"), "wb").close()
      raise _Killed
    write(r, index, arrays)

  monkeypatch.setattr(ode_pairs, "write_shard", killed_while_writing_shard_1)
  with pytest.raises(_Killed):
    ode_pairs.generate(config, root)
  assert sorted(os.listdir(root)) == [".shard_00001.tmp-dead", "meta.json", "shard_00000"]
  first = os.stat(os.path.join(ode_pairs.shard_path(root, 0), "ode_x0.npy")).st_mtime_ns
  monkeypatch.setattr(ode_pairs, "write_shard", write)
  with pytest.raises(ode_pairs.OdePairsError, match="1 of 2 ODE-pair shards"):
    ode_pairs.make_iterator(config, root)              # the reader refuses a partial set
  assert ode_pairs.generate(config, root)["last_step"] == COUNT
  assert os.stat(os.path.join(ode_pairs.shard_path(root, 0), "ode_x0.npy")).st_mtime_ns == first
  assert _files(root) == _files(pairs)                 # bit-identical to the straight run
  # Complete: a further run neither loads the teacher nor writes anything.
  monkeypatch.setattr(ode_init, "load_teacher_params", None)
  assert ode_pairs.generate(config, root)["seconds_per_example"] is None


def test_mismatched_settings_are_refused(config, pairs, tmp_path):
  for field, value in (("ode_steps", 6), ("ode_cfg", 3.0), ("ode_pairs", 24)):
    other = config.copy_and_resolve_references()
    other.student[field] = value
    name = "count" if field == "ode_pairs" else field
    with pytest.raises(ode_pairs.OdePairsError, match=f"{name}: stored"):
      ode_pairs.generate(other, pairs)
    with pytest.raises(ode_pairs.OdePairsError, match="cannot be mixed"):
      ode_pairs.make_iterator(other, pairs)
  other = config.copy_and_resolve_references()
  other.student.ode_pairs_shard = 12
  with pytest.raises(ode_pairs.OdePairsError, match="multiple of train.batch_size"):
    ode_pairs.generate(other, str(tmp_path / "x"))
  with pytest.raises(ode_pairs.OdePairsError, match="run the 'ode_pairs' stage first"):
    ode_pairs.make_iterator(config, str(tmp_path / "nothing"))


def test_pairs_iterator_is_shuffled_and_covers_every_example(config, pairs):
  it = ode_pairs.make_iterator(config, pairs)
  seen = np.concatenate([next(it)["ode_x0"] for _ in range(2)])        # one epoch
  stored = np.concatenate([ode_pairs.PairSource._open(ode_pairs.shard_path(pairs, i))["ode_x0"]
                           for i in range(2)])
  order = [int(np.argmin(np.abs(stored - x).sum(axis=(1, 2, 3, 4)))) for x in seen]
  assert sorted(order) == list(range(COUNT)) and order != list(range(COUNT))
  state = it.get_state()
  after = next(it)["ode_x0"]
  it.set_state(state)
  np.testing.assert_array_equal(next(it)["ode_x0"], after)


def test_pipeline_pairs_then_ode_init_exact_resume(config, pairs, tmp_path):
  """Stages (ode_pairs, ode_init): ode_init reads the sibling pairs, trains the student
  only (finite loss, params move), and a run killed at step 2 resumes bit-identically."""
  def cfg(steps, pairs_dir=""):
    c = config.copy_and_resolve_references()
    c.stages = ("ode_pairs", "ode_init")
    c.stage_steps.ode_init = steps
    c.train.ckpt_every = 2
    c.student.ode_pairs_dir = pairs_dir
    return c

  teacher_files = _files(config.student.teacher_ckpt)
  _, straight, info = run.run(cfg(4), str(tmp_path / "a"))      # generates a/ode_pairs
  assert info["last_step"] == 4
  assert _files(str(tmp_path / "a" / "ode_pairs")) == _files(pairs)
  # Resume: b reuses the fixture's pairs through student.ode_pairs_dir.
  run.run(cfg(2, pairs), str(tmp_path / "b"))
  _, resumed, _ = run.run(cfg(4, pairs), str(tmp_path / "b"))
  assert not os.path.exists(tmp_path / "b" / "ode_pairs")
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(straight),
               jax.device_get(resumed))
  rows = [json.loads(l) for l in open(tmp_path / "b" / "ode_init" / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [1, 2, 3, 4]
  assert all(np.isfinite(r["loss"]) and r["teacher_x0_std"] > 0 for r in rows)
  # Only the student changed: the teacher's checkpoint is untouched and not held.
  assert _files(config.student.teacher_ckpt) == teacher_files
  mesh = sharding.make_mesh(config.mesh)
  _, start, _, aux = ode_init.init(cfg(4), mesh)
  assert aux["teacher_params"] is None
  moved = [float(jnp.abs(a - b).max()) for a, b in
           zip(jax.tree.leaves(jax.device_get(resumed.params)),
               jax.tree.leaves(jax.device_get(start.params)))]
  assert max(moved) > 0
