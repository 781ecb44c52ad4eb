"""Teacher EMA weights: the update against a numpy reference, resume across an EMA
switch, and the loaders' preference for the EMA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from realcam_jax.ckpt.manager import Checkpointer, abstract_like
from realcam_jax.config import get_config
from realcam_jax.inference import load
from realcam_jax.models.realcam import RealCamDiT
from realcam_jax.train import common, data, run, teacher
from realcam_jax.train import state as st


def _flat(params):
  return [np.asarray(x, np.float64) for x in jax.tree.leaves(jax.device_get(params))]


def _reference(history, decay, start):
  """numpy EMA of params after steps 0..N: a copy through step `start`, then decay."""
  ema = history[0]
  for n, p in enumerate(history[1:], start=1):
    ema = p if n <= start else [decay * e + (1 - decay) * q for e, q in zip(ema, p)]
  return ema


def test_ema_of_the_train_step_matches_a_numpy_reference():
  config = get_config("teacher:tiny")
  config.train.ema_decay, config.train.ema_start = 0.7, 2
  config.optim.lr = 3e-3
  graphdef, params = st.split_model(RealCamDiT(config.model, rngs=nnx.Rngs(0)))
  optimizer = common.make_optimizer(config.optim)
  state = st.TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params),
                        st.ema_init(params))
  step = jax.jit(teacher.make_train_step(graphdef, config, optimizer))
  batch = jax.tree.map(jnp.asarray, next(data.make_iterator(config)))
  history = [_flat(state.params)]
  for _ in range(5):
    state, _ = step(state, batch)
    history.append(_flat(state.params))
  want = _reference(history, 0.7, 2)
  got = _flat(state.ema_params)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.ema_params))
  for g, w, p in zip(got, want, history[-1]):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
  # The EMA is not the last params (the test would pass trivially otherwise).
  assert max(float(np.abs(w - p).max()) for w, p in zip(want, history[-1])) > 1e-4


def test_ema_decay_outside_unit_interval_is_refused():
  config = get_config("teacher:tiny")
  config.train.ema_decay = 1.0
  with pytest.raises(ValueError, match=r"train.ema_decay=1.0 must be in \[0, 1\)"):
    common.ema_enabled(config.train)


def _saved(workdir, step, with_ema, like):
  """(params, ema or None) of checkpoint `step` in `workdir`."""
  target = abstract_like(like if with_ema else like.replace(ema_params=None))
  ckpt = Checkpointer(str(workdir / "ckpt"), with_data=False)
  try:
    state, _, _ = ckpt.restore(target, step=step)
  finally:
    ckpt.close()
  return _flat(state.params), None if state.ema_params is None else _flat(state.ema_params)


def test_resume_switches_ema_on_and_off_and_loaders_prefer_it(tmp_path, capsys):
  config = get_config("teacher:tiny")
  config.train.ckpt_every, config.train.keep = 1, 10
  config.train.ema_decay, config.train.ema_start = 0.0, 0
  workdir = tmp_path / "run"
  _, state, _ = run.run(config, str(workdir), num_steps=2)
  assert state.ema_params is None
  assert "ema_params" not in Checkpointer(str(workdir / "ckpt"), with_data=False).state_keys()

  # EMA switched on: the checkpoint of step 2 has none, so the EMA starts from its params.
  config.train.ema_decay = 0.5
  _, state, _ = run.run(config, str(workdir), num_steps=4)
  assert "step 2 has no EMA weights: the EMA starts from its params" in capsys.readouterr().out
  p2, _ = _saved(workdir, 2, False, state)
  p3, e3 = _saved(workdir, 3, True, state)
  p4, e4 = _saved(workdir, 4, True, state)
  for e, a, b, c in zip(e4, p2, p3, p4):
    np.testing.assert_allclose(e, 0.25 * a + 0.25 * b + 0.5 * c, rtol=1e-5, atol=1e-6)

  # Loaders read the EMA (inference and the student's frozen teacher alike).
  _, _, loaded = load.load_teacher(str(workdir), config)
  for g, w in zip(_flat(loaded), e4):
    np.testing.assert_allclose(g, w, rtol=1e-6)
  assert max(float(np.abs(w - p).max()) for w, p in zip(e4, p4)) > 1e-5

  # EMA switched off again: the saved EMA is dropped and training goes on from params.
  config.train.ema_decay = 0.0
  _, state, info = run.run(config, str(workdir), num_steps=5)
  assert info["last_step"] == 5 and state.ema_params is None
  assert "has EMA weights this run does not keep" in capsys.readouterr().out
  p5, e5 = _saved(workdir, 5, False, state)
  assert e5 is None and "ema_params" not in Checkpointer(
      str(workdir / "ckpt"), with_data=False).state_keys()
  _, _, loaded = load.load_teacher(str(workdir), config)
  for g, w in zip(_flat(loaded), p5):
    np.testing.assert_allclose(g, w, rtol=1e-6)


def test_ema_update_formula_by_hand():
  """One shared update (teacher and DMD generator): a copy up to `start`, f32 always."""
  ema = {"w": jnp.asarray([1.0, 2.0])}
  p = {"w": jnp.asarray([3.0, 6.0], jnp.bfloat16)}
  early = common.ema_update(ema, p, step=4, decay=0.9, start=5)
  np.testing.assert_allclose(early["w"], [3.0, 6.0])
  assert early["w"].dtype == jnp.float32
  late = common.ema_update(ema, p, step=5, decay=0.9, start=5)
  np.testing.assert_allclose(late["w"], [0.9 * 1 + 0.1 * 3, 0.9 * 2 + 0.1 * 6], rtol=1e-6)
