"""DMD stage: one critic and one generator update change only their own parameters; EMA;
cadence; the two-stage pipeline; exact resume."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realcam_jax import sharding
from realcam_jax.config import get_config
from realcam_jax.train import data, dmd, loop, run
from test_ode_init import perturbed_teacher_dir


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
  """A persistent compilation cache for this module: the trainer runs below rebuild the
  same two step functions several times (new jit objects, identical programs)."""
  from jax.experimental.compilation_cache import compilation_cache as cc
  keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
          "jax_persistent_cache_min_entry_size_bytes")
  old = {k: getattr(jax.config, k) for k in keys}
  jax.config.update(keys[0], str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update(keys[1], 0.0)
  jax.config.update(keys[2], 0)
  cc.reset_cache()
  yield
  for k, v in old.items():
    jax.config.update(k, v)
  cc.reset_cache()


@pytest.fixture(scope="module")
def config(tmp_path_factory):
  c = get_config("student:tiny")
  c.student.teacher_ckpt = perturbed_teacher_dir(c, tmp_path_factory.mktemp("teacher") / "t")
  return c


@pytest.fixture(scope="module")
def setup(config):
  mesh = sharding.make_mesh(config.mesh)
  graphdef, state, state_sh, aux = dmd.init(config, mesh)
  batch = jax.tree.map(jnp.asarray, next(data.make_iterator(config)))
  return mesh, graphdef, state, state_sh, aux, batch


def _changed(a, b):
  return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_critic_and_generator_iterations_touch_only_their_params(config, setup):
  """The trainer's own jitted functions (shared with the runs below via the cache)."""
  mesh, graphdef, state, state_sh, aux, batch = setup
  teacher = aux["teacher_params"]
  before = jax.device_get(state)
  teacher_before = jax.device_get(teacher)
  jax.tree.map(np.testing.assert_array_equal, before.critic_params, teacher_before)
  with jax.set_mesh(mesh):
    batch = loop.to_global(jax.device_get(batch), mesh)
    critic_fn, gen_fn = dmd.compile_iterations(graphdef, config, aux, state_sh, mesh, batch)
    copy = lambda: jax.tree.map(jnp.copy, state)    # noqa: E731  (the functions donate)
    s1, m1 = critic_fn(copy(), batch)
    s2, m2 = gen_fn(copy(), batch)
  s1, s2 = jax.device_get(s1), jax.device_get(s2)
  # Critic iteration: critic moves; generator, its optimizer, EMA and teacher do not.
  assert np.isfinite(float(m1["critic_loss"])) and float(m1["critic_loss"]) > 0
  assert float(m1["loss"]) == float(m1["critic_loss"]) and int(s1.step) == 1
  assert _changed(s1.critic_params, before.critic_params) > 0
  for a, b in ((s1.gen_params, before.gen_params), (s1.gen_opt, before.gen_opt),
               (s1.ema_params, before.ema_params)):
    jax.tree.map(np.testing.assert_array_equal, a, b)
  # Generator iteration: generator moves; critic, its optimizer and teacher do not.
  assert np.isfinite(float(m2["dmd_loss"])) and np.isfinite(float(m2["dmd_grad_norm"]))
  assert float(m2["dmd_grad_norm"]) > 0 and int(s2.step) == 0
  assert _changed(s2.gen_params, before.gen_params) > 0
  for a, b in ((s2.critic_params, before.critic_params), (s2.critic_opt, before.critic_opt)):
    jax.tree.map(np.testing.assert_array_equal, a, b)
  # step 0 < ema_start: the EMA is a copy of the new generator.
  jax.tree.map(np.testing.assert_array_equal, s2.ema_params, s2.gen_params)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(teacher), teacher_before)


def test_generator_cadence():
  assert [s for s in range(12) if dmd.is_generator_step(s, 5)] == [4, 9]
  assert all(dmd.is_generator_step(s, 1) for s in range(3))


def test_student_config_and_ablations():
  c = get_config("student:tiny,chunk1,no_loopaug")
  assert c.student.chunk_pairs == 1 and c.student.loopaug_fraction == 0.0
  assert c.model is c.teacher.model
  full = get_config("student:wan2_1_1_3b")
  assert (full.gen_optim.lr, full.critic_optim.lr) == (2e-6, 4e-7)
  assert (full.gen_optim.b1, full.gen_optim.b2, full.gen_optim.clip_norm) == (0.0, 0.999, 10.0)
  assert (full.student.gen_every, full.student.ema_decay, full.student.ema_start) == (5, 0.99, 200)
  assert full.data.latent_frames % full.student.chunk_pairs == 0
  with pytest.raises(ValueError, match="unknown student ablation"):
    get_config("student:tiny,nope")


def test_pipeline_ode_init_then_dmd_and_exact_resume(config, tmp_path):
  """`run.run` with stages (ode_init, dmd); a run killed inside DMD and restarted with
  the same command ends bit-identical to an uninterrupted one."""
  def cfg(dmd_steps):
    c = config.copy_and_resolve_references()
    c.stage_steps.ode_init, c.stage_steps.dmd = 2, dmd_steps
    c.train.ckpt_every = 2
    return c

  _, straight, info = run.run(cfg(4), str(tmp_path / "a"))
  assert info["last_step"] == 4 and isinstance(straight, dmd.DMDState)
  run.run(cfg(2), str(tmp_path / "b"))                     # "killed" after DMD step 2
  _, resumed, info = run.run(cfg(4), str(tmp_path / "b"))
  assert info["last_step"] == 4
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(straight),
               jax.device_get(resumed))
  rows = {stage: [json.loads(l) for l in open(tmp_path / "b" / stage / "metrics.jsonl")]
          for stage in ("ode_init", "dmd")}
  assert [r["step"] for r in rows["ode_init"]] == [1, 2]
  assert [r["step"] for r in rows["dmd"]] == [1, 2, 3, 4]
  # gen_every = 2: the generator updates at iterations 1 and 3 (logged as steps 2 and 4).
  assert ["dmd_loss" in r for r in rows["dmd"]] == [False, True, False, True]
  assert all(np.isfinite(r["critic_loss"]) for r in rows["dmd"])
  # DMD's generator started from the ODE-init result.
  sub = run.stage_config(cfg(4), "dmd", str(tmp_path / "b"))
  assert sub.student.init_from == os.path.join(str(tmp_path / "b"), "ode_init")
  ode_state = run.run_stage(run.stage_config(cfg(4), "ode_init", str(tmp_path / "b")),
                            str(tmp_path / "b" / "ode_init"))[1]
  _, gen0, _, _ = dmd.init(sub, sharding.make_mesh(sub.mesh))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(gen0.gen_params),
               jax.device_get(ode_state.params))
