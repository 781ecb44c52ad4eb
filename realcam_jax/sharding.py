"""All parallelism lives here: the mesh and the table of logical-axis rules.

Parameters and activations are annotated with *logical* axis names; `RULES`
maps each to mesh axes. Changing parallelism means editing this table (or
passing another one), nothing else. Activation constraints inside the model
(`constrain`) use the table made active with `use_rules` (trainers pick it with
`config.mesh.rules`); `context` shards the token axis over the `context` mesh axis.

Mesh axes:
  data     pure data parallelism (replicated parameters)
  fsdp     data parallelism with parameters/optimizer state sharded (ZeRO-3 style)
  tensor   Megatron-style tensor parallelism over heads / FFN hidden
  context  sequence (context) parallelism for long token sequences
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Iterator, Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor", "context")

# logical axis -> mesh axis (or tuple of mesh axes, or None = replicated)
RULES: dict[str, Any] = {
    # activations
    "batch": ("data", "fsdp"),
    "length": None,            # token axis; ("context",) under context parallelism
    "act_embed": None,
    "act_heads": "tensor",
    # parameters
    "embed": "fsdp",           # model width D
    "mlp": "tensor",           # FFN hidden
    "heads": "tensor",         # attention heads (fused N*H output dim)
    "kv": None,                # head dim
    "text_embed": None,        # text encoder width
    "layers": None,            # stacked-layer axis
    "conv_in": None,
    "conv_out": None,
    "modulation": None,
    "cache_slots": None,
}

CONTEXT_PARALLEL_RULES = {**RULES, "length": "context"}


RULE_TABLES = {"default": RULES, "context": CONTEXT_PARALLEL_RULES}


def rules_for(name: str = "default") -> dict[str, Any]:
  """Named rule tables: `default` or `context` (sequence-sharded activations)."""
  if name not in RULE_TABLES:
    raise ValueError(f"unknown sharding rules {name!r}; expected one of {sorted(RULE_TABLES)}")
  return dict(RULE_TABLES[name])


# The rules that activation constraints inside the model (`constrain`) use. Models call
# `constrain(x, logical)` without a table, so a trainer picks the table once, around tracing.
_ACTIVE_RULES: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "realcam_sharding_rules", default=RULES)


def active_rules() -> Mapping[str, Any]:
  """The rule table `constrain` uses now (`RULES` unless inside `use_rules`)."""
  return _ACTIVE_RULES.get()


@contextlib.contextmanager
def use_rules(rules: str | Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
  """Makes `rules` (a table or a name for `rules_for`) active for `constrain` in this block.

  Use it around the *tracing* of a jitted function (its first call, or `.lower`):
    with jax.set_mesh(mesh), sharding.use_rules("context"):
      out = jax.jit(forward)(...)
  """
  table = rules_for(rules) if isinstance(rules, str) else rules
  token = _ACTIVE_RULES.set(table)
  try:
    yield table
  finally:
    _ACTIVE_RULES.reset(token)


def make_mesh(mesh_config: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds a mesh with axes `MESH_AXES` from sizes; one size may be -1 (= the rest)."""
  devices = list(devices if devices is not None else jax.devices())
  sizes = {a: int(mesh_config.get(a, 1)) for a in MESH_AXES}
  free = [a for a, s in sizes.items() if s == -1]
  if len(free) > 1:
    raise ValueError(f"mesh config {dict(mesh_config)}: at most one axis may be -1")
  fixed = math.prod(s for s in sizes.values() if s != -1)
  if free:
    if len(devices) % fixed:
      raise ValueError(f"mesh config {dict(mesh_config)}: {len(devices)} devices are not "
                       f"divisible by the fixed axes' product {fixed}")
    sizes[free[0]] = len(devices) // fixed
  total = math.prod(sizes.values())
  if total != len(devices):
    raise ValueError(f"mesh config {dict(mesh_config)} needs {total} devices, have {len(devices)}")
  arr = np.asarray(devices).reshape([sizes[a] for a in MESH_AXES])
  return Mesh(arr, MESH_AXES)


def logical_to_spec(logical: Sequence[str | None] | None, rules: Mapping[str, Any] = RULES) -> P:
  """('embed', 'heads') -> P('fsdp', 'tensor'). Unknown names are an error."""
  if logical is None:
    return P()
  out = []
  used: set[str] = set()
  for name in logical:
    if name is None:
      out.append(None)
      continue
    if name not in rules:
      raise KeyError(f"logical axis {name!r} has no sharding rule; known: {sorted(rules)}")
    axes = rules[name]
    axes_t = (axes,) if isinstance(axes, str) else tuple(axes or ())
    axes_t = tuple(a for a in axes_t if a not in used)  # a mesh axis may shard one dim only
    used.update(axes_t)
    out.append(None if not axes_t else axes_t[0] if len(axes_t) == 1 else axes_t)
  return P(*out)


def _fit_spec(spec: P, shape: Sequence[int], mesh: Mesh) -> P:
  """Drops mesh axes that do not divide a dimension (e.g. 2 heads on a 4-way axis)."""
  out = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    if axes is None:
      out.append(None)
      continue
    axes_t = (axes,) if isinstance(axes, str) else tuple(axes)
    kept = []
    size = 1
    for a in axes_t:
      if dim % (size * mesh.shape[a]) == 0:
        kept.append(a)
        size *= mesh.shape[a]
    out.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
  return P(*out)


def logical_sharding(logical, shape, mesh: Mesh, rules: Mapping[str, Any] = RULES) -> NamedSharding:
  return NamedSharding(mesh, _fit_spec(logical_to_spec(logical, rules), shape, mesh))


def state_logical_axes(state: nnx.State):
  """The logical axis names stored on each variable (`out_sharding` metadata), or None."""
  def get(v):
    md = v.get_metadata() if hasattr(v, "get_metadata") else {}
    return md.get("out_sharding") or md.get("sharding_names") or md.get("sharding")
  return jax.tree.map(get, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def state_shardings(state: nnx.State, mesh: Mesh, rules: Mapping[str, Any] = RULES):
  """NamedShardings for an (abstract or concrete) nnx.State from its logical annotations."""
  def one(v):
    md = v.get_metadata() if hasattr(v, "get_metadata") else {}
    logical = md.get("out_sharding")
    shape = np.shape(v.get_value()) if hasattr(v, "get_value") else np.shape(v)
    return logical_sharding(logical, shape, mesh, rules)
  return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh, ndim: int, rules: Mapping[str, Any] = RULES) -> NamedSharding:
  """Shards the leading (batch) axis over data-parallel axes, replicates the rest."""
  return NamedSharding(mesh, logical_to_spec(("batch",) + (None,) * (ndim - 1), rules))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def constrain(x: jax.Array, logical: Sequence[str | None],
              rules: Mapping[str, Any] | None = None):
  """`with_sharding_constraint` by logical names; a no-op when no mesh is active.

  `rules` defaults to the active table (`use_rules`), `RULES` outside any.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh is None or mesh.empty:
    return x
  rules = active_rules() if rules is None else rules
  spec = _fit_spec(logical_to_spec(logical, rules), x.shape, mesh)
  return jax.lax.with_sharding_constraint(x, spec)
