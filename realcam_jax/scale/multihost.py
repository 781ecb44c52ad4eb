"""Multi-process (multi-host) runtime: initialisation, batch layout, preemption, gathering.

The same training code runs on one CPU and on a multi-host slice. What differs:

  - `initialize` starts JAX's distributed runtime (coordinator address, process count
    and id given, or detected on Cloud TPU / SLURM); on CPU it selects the gloo
    collectives so several CPU processes can run one program (the localhost tests).
  - Every process feeds the rows of the global batch its devices hold;
    `process_batch_rows` computes them from the mesh and `check_batch_layout` says
    clearly when a mesh would need two processes to feed the same rows.
  - `StopRequest` turns SIGTERM/SIGINT into "save at the next step boundary and exit".
    With several processes the signal may reach only some of them (TPU maintenance
    events are per host), so the processes agree on the step through JAX's preemption
    sync service; alone, a plain Python signal handler is enough.
  - `barrier` holds every process until all reach it. The training loop compiles its
    step ahead and waits there before the first step: XLA's CPU (gloo) collectives
    give the other processes only 30 s to join a new communicator, less than compile
    and restore can differ between hosts.
  - `gather` fetches a (possibly sharded across processes) pytree to host numpy on
    every process.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any, Mapping

import jax
import numpy as np

from realcam_jax import sharding

log = logging.getLogger(__name__)


def distributed_client_active() -> bool:
  """True once `jax.distributed.initialize` has run in this process."""
  from jax._src import distributed
  return distributed.global_state.client is not None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False) -> bool:
  """Starts JAX's distributed runtime when this is a multi-process run.

  Args:
    coordinator: "host:port" of process 0 (given with `num_processes`, `process_id`).
    num_processes: total number of processes.
    process_id: this process' index in [0, num_processes).
    auto: no address given, let JAX detect the cluster (Cloud TPU VM workers, SLURM,
      Open MPI); what `launch/tpu_vm.sh` uses on pod slices.

  Returns:
    True if the runtime was initialised.
  """
  explicit = coordinator is not None or num_processes is not None or process_id is not None
  if not explicit and not auto:
    return False
  if explicit:
    missing = [n for n, v in (("--coordinator", coordinator), ("--num_processes", num_processes),
                              ("--process_id", process_id)) if v is None]
    if missing:
      raise ValueError(f"multi-process launch needs --coordinator, --num_processes and "
                       f"--process_id together; missing {', '.join(missing)}")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id={process_id} must be in [0, --num_processes="
                       f"{num_processes})")
  # XLA's default CPU collectives work inside one process only; gloo connects CPU
  # processes (the localhost tests) and changes nothing for TPU/GPU computations.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if explicit:
    jax.distributed.initialize(coordinator, num_processes, process_id)
  else:
    jax.distributed.initialize()
  log.info("process %d of %d: %d local / %d global devices", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def is_main_process() -> bool:
  """Process 0 writes logs, metrics and progress."""
  return jax.process_index() == 0


def is_remote_path(path: str) -> bool:
  """gs://, s3:// ... (Orbax writes checkpoints there; plain `open` cannot append there)."""
  return "://" in str(path)


def metrics_dir(workdir: str) -> str:
  """Where process 0 writes metrics.jsonl and TensorBoard events for `workdir`.

  The workdir itself when it is a local (or shared) filesystem path; for a bucket
  workdir (gs://b/run) a local mirror `$REALCAM_LOGDIR/b/run` (default
  ~/realcam_logs), since object stores cannot append to a file. Checkpoints always
  go to the workdir.
  """
  if not is_remote_path(workdir):
    return workdir
  root = os.environ.get("REALCAM_LOGDIR", os.path.expanduser("~/realcam_logs"))
  return os.path.join(root, str(workdir).split("://", 1)[1].strip("/"))


# --------------------------------------------------------------------------- batch layout

def process_batch_rows(mesh, global_batch: int,
                       rules: Mapping[str, Any] | None = None) -> tuple[int, int]:
  """(start, stop): the rows of a global batch the devices of this process hold.

  Raises ValueError if they are not one contiguous block (a mesh whose batch-sharded
  axes interleave processes) -- the data loader could not feed them.
  """
  rules = sharding.active_rules() if rules is None else rules
  sh = sharding.batch_sharding(mesh, 1, rules)
  rows = set()
  for device, index in sh.devices_indices_map((global_batch,)).items():
    if device.process_index == jax.process_index():
      rows.update(range(*index[0].indices(global_batch)))
  start, stop = min(rows), max(rows) + 1
  if len(rows) != stop - start:
    raise ValueError(f"the mesh {dict(mesh.shape)} gives process {jax.process_index()} "
                     f"non-contiguous batch rows {sorted(rows)}; order the devices so each "
                     "process holds one block of the batch-sharded axes (data, fsdp)")
  return start, stop


def check_batch_layout(mesh, global_batch: int, rules: Mapping[str, Any] | None = None
                       ) -> tuple[int, int]:
  """Checks that process p holds rows [p * b, (p + 1) * b) with b = global_batch / processes.

  That is the block the data pipeline (`realcam_jax.train.data`) gives each process.
  It fails when the batch-sharded mesh axes (data, fsdp) do not span the processes,
  e.g. a `tensor` or `context` axis larger than the devices of one host: then two
  processes hold the same rows and must read the same examples.
  """
  n, p = jax.process_count(), jax.process_index()
  if global_batch % n:
    raise ValueError(f"train.batch_size={global_batch} must be divisible by the number of "
                     f"processes ({n})")
  local = global_batch // n
  start, stop = process_batch_rows(mesh, global_batch, rules)
  if (start, stop) != (p * local, (p + 1) * local):
    raise ValueError(
        f"mesh {dict(mesh.shape)}: process {p} of {n} holds batch rows [{start}, {stop}), but "
        f"the data pipeline feeds it rows [{p * local}, {(p + 1) * local}). Keep the "
        f"tensor x context axes within one host ({jax.local_device_count()} devices) so the "
        "data and fsdp axes span the processes")
  return start, stop


# --------------------------------------------------------------------------- barrier

BARRIER_TIMEOUT_S = float(os.environ.get("REALCAM_BARRIER_TIMEOUT_S", "3600"))


def barrier(name: str, timeout_s: float | None = None) -> None:
  """Waits until every process has called `barrier(name)`; nothing with one process.

  Uses the coordination service (no device collective, so it cannot itself start a
  communicator that times out). `name` must be unique within the run. Raises
  RuntimeError naming the barrier when a process does not arrive within `timeout_s`
  (default `REALCAM_BARRIER_TIMEOUT_S`, 3600 s: long compiles on a big slice).
  """
  if jax.process_count() == 1 or not distributed_client_active():
    return
  from jax._src import distributed
  timeout_s = BARRIER_TIMEOUT_S if timeout_s is None else float(timeout_s)
  try:
    distributed.global_state.client.wait_at_barrier(name, int(timeout_s * 1000))
  except Exception as e:  # jaxlib's JaxRuntimeError (DEADLINE_EXCEEDED, a peer died)
    raise RuntimeError(f"process {jax.process_index()}: not every process reached barrier "
                       f"{name!r} within {timeout_s:.0f} s ({e})") from e


# --------------------------------------------------------------------------- preemption

def preemption_service_available() -> bool:
  """True when JAX's preemption sync manager runs (after `jax.distributed.initialize`)."""
  from jax._src import distributed
  return distributed.global_state.preemption_sync_manager is not None


class StopRequest:
  """SIGTERM / SIGINT -> stop at a step boundary that every process agrees on.

  Use as a context manager and call `should_stop(step)` exactly once per step on
  every process (with the same step ids):

    with StopRequest() as stop:
      for step in ...:
        ...
        if stop.should_stop(step): save(); break

  One process: Python handlers set a flag. Several processes (JAX's distributed
  runtime initialised): JAX's own SIGTERM notifier (installed by
  `jax.distributed.initialize`) tells the coordination service, which picks the next
  step every process reaches as the sync point; SIGINT is forwarded as SIGTERM so
  Ctrl-C on one host stops all of them the same way.
  """

  def __init__(self):
    self.signal: int | None = None
    self.synced = preemption_service_available()
    self._old: dict[int, Any] = {}

  def __enter__(self) -> "StopRequest":
    signals = (signal.SIGINT,) if self.synced else (signal.SIGTERM, signal.SIGINT)
    for s in signals:
      try:
        self._old[s] = signal.signal(s, self._handle)
      except ValueError:  # not the main thread: signals stay with their current handlers
        pass
    return self

  def _handle(self, signum, frame):
    self.signal = signum
    if self.synced:
      os.kill(os.getpid(), signal.SIGTERM)  # to JAX's notifier, which tells the others

  def should_stop(self, step: int) -> bool:
    """True at the first step boundary where training must save and stop."""
    if not self.synced:
      return self.signal is not None
    from jax.experimental import multihost_utils
    if multihost_utils.reached_preemption_sync_point(int(step)):
      self.signal = self.signal or signal.SIGTERM
      return True
    return False

  def __exit__(self, *exc):
    for s, h in self._old.items():
      signal.signal(s, h)
    self._old.clear()


# --------------------------------------------------------------------------- gathering

def gather(tree):
  """A pytree of (possibly process-sharded) arrays -> numpy on every process."""
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      from jax.experimental import multihost_utils
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
  return jax.tree.map(one, tree)
