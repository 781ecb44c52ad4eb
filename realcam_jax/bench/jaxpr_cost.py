"""FLOPs and operand bytes of the matrix multiplies and convolutions in a jaxpr.

What the analytic cost model (`bench/cost.py`, `models/flops.py`) is checked against:

  flops    2 x MACs of every `dot_general` and `conv_general_dilated`
  bytes    their operands and results, each once, at the dtypes in the jaxpr
  written  bytes of the updates of every `dynamic_update_slice` (the KV cache write)

Sub-jaxprs count with their trip count: a `scan` body `length` times, a `while_loop`
body `while_trips` times (a jaxpr does not know it: the caller must), anything else
(pjit, remat, custom_jvp, ...) once.

  jaxpr = jax.make_jaxpr(fn)(*args)
  count(jaxpr, while_trips=5)   # -> JaxprCost(flops, bytes, written)
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class JaxprCost:
  flops: int = 0
  bytes: int = 0
  written: int = 0

  def __add__(self, other: "JaxprCost") -> "JaxprCost":
    return JaxprCost(self.flops + other.flops, self.bytes + other.bytes,
                     self.written + other.written)

  def times(self, n: int) -> "JaxprCost":
    return JaxprCost(self.flops * n, self.bytes * n, self.written * n)


def _nbytes(var) -> int:
  aval = var.aval
  return int(math.prod(aval.shape)) * aval.dtype.itemsize


def _eqn_cost(eqn) -> JaxprCost:
  name = eqn.primitive.name
  if name == "dot_general":
    (contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    macs = math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in contract)
  elif name == "conv_general_dilated":
    rhs = eqn.invars[1].aval.shape
    out_feature = eqn.params["dimension_numbers"].rhs_spec[0]
    macs = math.prod(eqn.outvars[0].aval.shape) * math.prod(rhs) // rhs[out_feature]
  elif name == "dynamic_update_slice":
    return JaxprCost(written=_nbytes(eqn.invars[1]))
  else:
    return JaxprCost()
  moved = _nbytes(eqn.invars[0]) + _nbytes(eqn.invars[1]) + _nbytes(eqn.outvars[0])
  return JaxprCost(flops=2 * int(macs), bytes=moved)


def _inner(p):
  """The jaxpr inside a params value (ClosedJaxpr or Jaxpr), else None."""
  if hasattr(p, "eqns"):
    return p
  inner = getattr(p, "jaxpr", None)
  if inner is None:
    return None
  return inner if hasattr(inner, "eqns") else getattr(inner, "jaxpr", None)


def count(jaxpr, *, while_trips: int | None = None) -> JaxprCost:
  """The cost of `jaxpr` (a ClosedJaxpr from `jax.make_jaxpr`, or a Jaxpr).

  Raises ValueError on a `while_loop` when `while_trips` is None, and on a `cond`
  (its branches may differ: the count would be ambiguous).
  """
  jaxpr = _inner(jaxpr)
  total = JaxprCost()
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    total = total + _eqn_cost(eqn)
    if name == "while":
      if while_trips is None:
        raise ValueError("the jaxpr has a while_loop: pass while_trips (its trip count)")
      total = total + count(eqn.params["body_jaxpr"], while_trips=while_trips).times(while_trips)
      continue
    if name == "cond":
      raise ValueError("the jaxpr has a lax.cond: its branches cannot be counted as one")
    times = int(eqn.params.get("length", 1)) if name == "scan" else 1
    for p in eqn.params.values():
      for sub in (p if isinstance(p, (tuple, list)) else [p]):
        inner = _inner(sub)
        if inner is not None:
          total = total + count(inner, while_trips=while_trips).times(times)
  return total
