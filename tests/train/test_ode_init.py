"""ODE initialisation: trajectory levels, per-chunk level mixing, teacher loading, one step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realcam_jax import sharding
from realcam_jax.config import get_config
from realcam_jax.testing import perturb
from realcam_jax.inference import student as student_inf
from realcam_jax.train import data, ode_init
from realcam_jax.train import state as st


def _batch(config):
  return jax.tree.map(jnp.asarray, next(data.make_iterator(config)))


def test_trajectory_levels_are_nearest_to_student_levels():
  config = get_config("student:demo")           # 48 Euler steps at shift 5
  idx, sig = ode_init.trajectory_levels(config)
  target = np.asarray(student_inf.student_sigmas(config))
  np.testing.assert_allclose(target * 1000, [1000, 937.5, 833.3, 625], atol=0.1)
  assert idx[0] == 0 and np.all(np.diff(idx) > 0)
  assert np.abs(sig - target).max() < 0.02
  from realcam_jax.diffusion import schedule
  euler = np.asarray(schedule.euler_sigmas(48, 5.0))
  for i, t in zip(idx, target):
    assert np.abs(euler[i] - t) == np.abs(euler - t).min()


def test_guided_velocity_unconditional_branch_sees_the_empty_prompt():
  from flax import nnx
  from realcam_jax.models import layout
  from realcam_jax.models.realcam import RealCamDiT
  cfg = get_config("configs/teacher.py:tiny", []).model
  graphdef, params = nnx.split(RealCamDiT(cfg, rngs=nnx.Rngs(0)))
  model = nnx.merge(graphdef, perturb(params, 0.2))
  k = jax.random.split(jax.random.key(3), 5)
  src = jax.random.normal(k[0], (2, 3, 4, 4, cfg.in_channels))
  x_t = jax.random.normal(k[1], src.shape)
  sigma = jnp.full((2, 3), 0.7)
  cam = jax.random.normal(k[2], (2, 3, 12))
  text = jax.random.normal(k[3], (2, cfg.text_len, cfg.text_dim))
  empty = jax.random.normal(k[4], (1, cfg.text_len, cfg.text_dim))
  tgt = lambda v: layout.split(v, cfg.layout)[1]  # noqa: E731
  cond = tgt(model(src, x_t, sigma, cam, text))
  # The unconditional reference, written out: no camera, the empty prompt as the text.
  uncond = tgt(model(src, x_t, sigma, None, jnp.broadcast_to(empty, text.shape)))
  got = ode_init.guided_velocity(model, src, x_t, sigma, cam, text, 3.0, uncond_text=empty)
  np.testing.assert_allclose(got, uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-4)
  zeros = ode_init.guided_velocity(model, src, x_t, sigma, cam, text, 3.0)
  assert float(jnp.abs(zeros - got).max()) > 1e-3     # None = zeros, which differs


def test_mix_levels_picks_one_level_per_chunk():
  n, b, f = 4, 3, 6
  latents = jnp.arange(n, dtype=jnp.float32)[:, None, None, None, None, None] * jnp.ones(
      (n, b, f, 2, 2, 1))
  latents = latents + 10 * jnp.arange(f, dtype=jnp.float32)[None, None, :, None, None, None]
  sigmas = jnp.asarray([1.0, 0.9, 0.8, 0.6])
  x_t, sigma, level = ode_init.mix_levels(latents, sigmas, jax.random.key(0), chunk_pairs=3)
  level = np.asarray(level)
  assert (level[:, :3] == level[:, :1]).all() and (level[:, 3:] == level[:, 3:4]).all()
  np.testing.assert_array_equal(np.asarray(x_t)[..., 0, 0, 0], level + 10 * np.arange(f))
  np.testing.assert_allclose(sigma, np.asarray(sigmas)[level])
  many = ode_init.mix_levels(latents, sigmas, jax.random.key(1), 1)[2]
  assert len(np.unique(np.asarray(many))) > 1        # chunks pick independently


def perturbed_teacher_dir(config, path, scale=0.1):
  """A 'trained' teacher (random non-zero weights; the zero-initialised heads of a fresh
  model make every output zero) saved as a converted directory."""
  from realcam_jax.ckpt import orbax_io
  mesh = sharding.make_mesh(config.mesh)
  _, abs_params, param_sh = ode_init.abstract_params(config, mesh)
  params = ode_init.load_teacher_params(config, abs_params, param_sh)
  return orbax_io.save_state(str(path), jax.device_get(perturb(params, scale)), config)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  config = get_config("student:tiny")
  config.student.teacher_ckpt = perturbed_teacher_dir(config, tmp_path_factory.mktemp("t") / "x")
  mesh = sharding.make_mesh(config.mesh)
  graphdef, state, state_sh, aux = ode_init.init(config, mesh)
  return config, mesh, graphdef, state, state_sh, aux


def test_student_starts_as_teacher_and_learns_teacher_untouched(setup):
  config, mesh, graphdef, state, state_sh, aux = setup
  teacher = aux["teacher_params"]
  jax.tree.map(np.testing.assert_array_equal, state.params, teacher)
  teacher_before = jax.device_get(teacher)
  batch = _batch(config)
  with jax.set_mesh(mesh):
    step = ode_init.compile_step(graphdef, config, aux, state_sh, mesh, batch)
    losses = []
    for _ in range(20):
      state, metrics = step(state, batch)
      losses.append(float(metrics["loss"]))
  assert np.isfinite(losses).all() and losses[0] > 0
  assert np.mean(losses[-3:]) < 0.5 * losses[0], losses       # the regression learns
  assert int(state.step) == 20
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(aux["teacher_params"]),
               teacher_before)
  moved = [float(jnp.abs(a - b).max()) for a, b in
           zip(jax.tree.leaves(state.params), jax.tree.leaves(teacher_before))]
  assert max(moved) > 0


def test_teacher_loads_from_workdir_and_converted_dir(setup, tmp_path):
  config, mesh, graphdef, state, state_sh, aux = setup
  from realcam_jax.ckpt import orbax_io
  from realcam_jax.ckpt.manager import Checkpointer
  _, abs_params = st.abstract_model(ode_init.build_model(config))
  param_sh = aux["param_shardings"]
  params = jax.tree.map(lambda x: x + 1.5, jax.device_get(aux["teacher_params"]))
  # A teacher training workdir: TrainState under workdir/ckpt/<step>.
  ckpt = Checkpointer(str(tmp_path / "teacher" / "ckpt"), with_data=False)
  ckpt.save(7, st.TrainState(jnp.asarray(7), params, {"mu": params}), {"stage": "teacher"},
            force=True)
  ckpt.close()
  got = ode_init.load_params(str(tmp_path / "teacher"), abs_params, param_sh)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(got), params)
  # A converted / exported directory.
  orbax_io.save_state(str(tmp_path / "conv"), params, config)
  got = ode_init.load_params(str(tmp_path / "conv"), abs_params, param_sh)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(got), params)
  with pytest.raises(FileNotFoundError, match="is not a checkpoint"):
    ode_init.load_params(str(tmp_path / "nothing"), abs_params, param_sh)


def test_clean_history_regression(setup, monkeypatch):
  """student.ode_history='clean': later chunks see the trajectory's x0 at sigma 0. The
  first chunk (no history) predicts the same as with independent levels, later chunks
  not; an unknown name is refused."""
  config, mesh, graphdef, state, state_sh, aux = setup
  batch = _batch(config)
  from realcam_jax.train import rollout
  conditions = rollout.conditions(config, batch)
  r = np.random.default_rng(0)
  n = len(ode_init.trajectory_levels(config)[1])
  latents = jnp.asarray(r.standard_normal((n,) + conditions[0].shape), jnp.float32)
  x0 = jnp.asarray(r.standard_normal(conditions[0].shape), jnp.float32)
  sigmas = jnp.asarray(ode_init.trajectory_levels(config)[1])
  from realcam_jax.models import causal
  captured, real = {}, causal.full_block_causal

  def spy(*a, **kw):                       # the student's velocity inside the loss
    captured["clean" if kw.get("history_target") is not None else "independent"] = out = \
        real(*a, **kw)
    return out

  monkeypatch.setattr(causal, "full_block_causal", spy)
  params = perturb(aux["teacher_params"])      # (the fixture's state was donated)

  def run(history):
    c = config.copy_and_resolve_references()
    c.student.ode_history = history
    return float(ode_init.regression_loss(params, graphdef, c, conditions, latents, sigmas, x0,
                                          jax.random.key(3))[0])

  loss_ind, loss_clean = run("independent"), run("clean")
  assert np.isfinite([loss_ind, loss_clean]).all() and loss_ind != loss_clean
  k = int(config.student.chunk_pairs)
  a, b = np.asarray(captured["independent"]), np.asarray(captured["clean"])
  np.testing.assert_allclose(b[:, :2 * k], a[:, :2 * k], rtol=1e-4, atol=1e-5)
  assert np.abs(b - a)[:, 2 * k:].max() > 1e-3
  with pytest.raises(ValueError, match="unknown student.ode_history 'dirty'"):
    run("dirty")
