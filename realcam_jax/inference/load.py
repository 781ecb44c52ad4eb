"""Models for inference: the student (DiT) params and the VAE, from checkpoints or random.

`load_models(student_ckpt, vae_ckpt, config)` is what `realcam render` / `realcam serve`
call. Student checkpoints may be

- a training workdir of the student (`W/`, with `W/dmd/ckpt` or `W/ode_init/ckpt`; the
  DMD stage wins), a stage workdir (`W/dmd`, with `ckpt/`) or a `Checkpointer` directory
  (numbered steps): the EMA generator params are used (`ema_params`, else `gen_params`,
  else `params`);
- an `orbax_io` directory (`state/` + `config.json`, e.g. `realcam convert` output or a
  demo export): its saved model config replaces `config.model`.

`load_teacher(path, config)` restores the bidirectional teacher (or the prefix baseline)
for `realcam eval` from a teacher training workdir (`launch/train.py --config
configs/teacher.py:...`; latest step's `params`), a `Checkpointer` directory or an
`orbax_io` directory; the model config saved with the checkpoint (the latest step's
`config` item, or `config.json`) replaces `config.model`, so a prefix-layout
checkpoint loads as one.

The VAE comes from an `orbax_io` directory (`realcam_jax.ckpt.vae_weights.load_vae`).
`None` means random weights (the output is noise): a warning is printed, loudly.
The random VAE's size follows the DiT's (`tiny` -> `configs/vae.py:tiny`, `demo` ->
`demo`, `wan2_1_1_3b` -> `wan2_1`).
"""

from __future__ import annotations

import os
import sys

import jax
from flax import nnx

RANDOM_WARNING = "random weights: output is noise"
_VAE_FOR_DIT = {"tiny": "tiny", "demo": "demo", "wan2_1_1_3b": "wan2_1"}
_PARAM_KEYS = ("ema_params", "gen_params", "params")


class LoadError(ValueError):
  """A checkpoint path given by the user cannot be used; the message says why."""


def _warn(what: str, out=None):
  out = sys.stderr if out is None else out
  print(f"WARNING: no {what} checkpoint given: {RANDOM_WARNING} ({what} initialised at random)",
        file=out, flush=True)


def vae_config_for(config):
  """The VAE config whose latents the DiT of `config` expects."""
  from realcam_jax.config import get_config
  size = config.model.get("size", "tiny")
  if size not in _VAE_FOR_DIT:
    raise LoadError(f"no VAE size is known for the DiT size {size!r}; pass --vae CKPT")
  return get_config(f"vae:{_VAE_FOR_DIT[size]}")


def _student_dir(path: str) -> str:
  """The directory `ode_init.load_params` understands, preferring the DMD stage."""
  for stage in ("dmd", "ode_init"):
    if os.path.isdir(os.path.join(path, stage, "ckpt")):
      return os.path.join(path, stage)
  return path


def checkpoint_step(path: str | None) -> int | None:
  """The training step of the weights a loader takes from `path` (None if unknown).

  An exported / converted directory: the `step` in its meta.json; a training workdir:
  the newest checkpoint of the directory `load_student` / `load_teacher` read (the DMD
  stage, else ODE init, else `W/ckpt`, else `path` itself as a `Checkpointer` directory).
  """
  from realcam_jax.ckpt import orbax_io
  if not path or not os.path.isdir(path):
    return None
  if os.path.isfile(os.path.join(path, orbax_io.META_FILE)):
    step = orbax_io.load_meta(path).get("step")
    return int(step) if isinstance(step, (int, float)) else None
  d = _student_dir(path)
  ckpt = os.path.join(d, "ckpt") if os.path.isdir(os.path.join(d, "ckpt")) else d
  steps = [int(n) for n in os.listdir(ckpt) if n.isdigit()]
  return max(steps) if steps else None


def load_student(path: str | None, config, seed: int = 0, out=None):
  """(config, graphdef, params) of the student; `path=None` gives random weights."""
  from realcam_jax.ckpt import orbax_io
  from realcam_jax.models.realcam import RealCamDiT
  from realcam_jax.train import state as st

  if path is None:
    _warn("student", out)
    graphdef, params = st.split_model(RealCamDiT(config.model, rngs=nnx.Rngs(seed)))
    return config, graphdef, params
  if not os.path.isdir(path):
    raise LoadError(f"student checkpoint {path} does not exist or is not a directory")
  path = os.path.abspath(path)
  if os.path.isfile(os.path.join(path, orbax_io.CONFIG_FILE)):
    saved = orbax_io.load_config(path)
    if "model" in saved:
      config = config.copy_and_resolve_references()
      with config.ignore_type():
        config.model = saved.model
  from realcam_jax.train import ode_init
  graphdef, abs_params = st.abstract_model(lambda rngs: RealCamDiT(config.model, rngs=rngs), seed)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  param_sh = jax.tree.map(lambda _: device, abs_params)
  try:
    params = ode_init.load_params(_student_dir(path), abs_params, param_sh, keys=_PARAM_KEYS)
  except (FileNotFoundError, ValueError) as e:
    raise LoadError(f"cannot load the student from {path}: {e}") from None
  return config, graphdef, params


def _saved_model_config(path: str):
  """The `model` section saved with a teacher checkpoint at `path`, or None if none is found."""
  import json
  from realcam_jax import config as config_lib
  from realcam_jax.ckpt import orbax_io
  if os.path.isfile(os.path.join(path, orbax_io.CONFIG_FILE)):
    saved = orbax_io.load_config(path)
    return saved.model if "model" in saved else None
  ckpt = os.path.join(path, "ckpt") if os.path.isdir(os.path.join(path, "ckpt")) else path
  steps = [int(d) for d in os.listdir(ckpt)
           if d.isdigit() and os.path.isfile(os.path.join(ckpt, d, "config", "metadata"))]
  if not steps:
    return None
  with open(os.path.join(ckpt, str(max(steps)), "config", "metadata")) as f:
    saved = json.load(f)
  return config_lib.from_json(json.dumps(saved["model"])) if "model" in saved else None


def load_teacher(path: str | None, config, seed: int = 0, out=None, *, what: str = "teacher"):
  """(config, graphdef, params) of the bidirectional teacher; `path=None` gives random weights.

  Args:
    path: teacher training workdir (`W/`, with `W/ckpt`), a `Checkpointer` directory
      (numbered steps; its EMA weights when it has them, else its params) or an
      `orbax_io` directory (`state/` + `config.json`); None = random weights (warned
      about on `out`, default stderr).
    config: the teacher's config (`config.teacher` of a student config, or a teacher
      config); its `model` section is replaced by the one saved with the checkpoint.
    seed: initialisation seed for random weights.
    what: what to call the model in messages ("teacher", "prefix").

  Raises:
    LoadError: the path is missing or is not a teacher checkpoint of this model.
  """
  from realcam_jax.models.realcam import RealCamDiT
  from realcam_jax.train import ode_init
  from realcam_jax.train import state as st

  if path is None:
    _warn(what, out)
    graphdef, params = st.split_model(RealCamDiT(config.model, rngs=nnx.Rngs(seed)))
    return config, graphdef, params
  if not os.path.isdir(path):
    raise LoadError(f"{what} checkpoint {path} does not exist or is not a directory")
  path = os.path.abspath(path)
  try:
    saved = _saved_model_config(path)
  except (OSError, ValueError) as e:
    raise LoadError(f"cannot read the config saved with the {what} at {path}: {e}") from None
  if saved is not None:
    config = config.copy_and_resolve_references()
    with config.ignore_type():
      config.model = saved
  graphdef, abs_params = st.abstract_model(lambda rngs: RealCamDiT(config.model, rngs=rngs), seed)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  param_sh = jax.tree.map(lambda _: device, abs_params)
  try:
    params = ode_init.load_params(path, abs_params, param_sh, keys=ode_init.TEACHER_KEYS)
  except (FileNotFoundError, ValueError) as e:
    raise LoadError(f"cannot load the {what} from {path}: {e}") from None
  return config, graphdef, params


def load_vae_model(path: str | None, config, out=None):
  """The VAE from an `orbax_io` directory, or random (`path=None`) sized for the DiT."""
  from realcam_jax.models import vae as vae_lib
  if path is None:
    _warn("VAE", out)
    return vae_lib.create_vae(vae_config_for(config).model, seed=0)
  if not os.path.isdir(path):
    raise LoadError(f"VAE checkpoint {path} does not exist or is not a directory")
  from realcam_jax.ckpt import vae_weights
  try:
    return vae_weights.load_vae(path)
  except (FileNotFoundError, ValueError) as e:
    raise LoadError(f"cannot load the VAE from {path}: {e}") from None


def load_models(student_ckpt: str | None, vae_ckpt: str | None, config, *, seed: int = 0,
                out=None):
  """(config, student graphdef, student params, vae) for a `StreamingSession`.

  Raises:
    LoadError: a checkpoint path is missing or does not match the model.
  """
  config, graphdef, params = load_student(student_ckpt, config, seed, out)
  vae = load_vae_model(vae_ckpt, config, out)
  if vae.z_dim != config.model.in_channels:
    raise LoadError(f"the VAE has {vae.z_dim} latent channels but the student expects "
                    f"{config.model.in_channels}; pass a matching --vae")
  return config, graphdef, params, vae
