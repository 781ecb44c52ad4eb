"""Small building blocks shared by the DiT: dtypes, Linear, f32 norms, FFN, remat.

Every parameter carries logical axis names (`out_sharding` metadata) that
`realcam_jax.sharding.RULES` maps onto mesh axes. Norms always compute in f32
and return f32; callers cast back to the activation dtype where Wan does.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = Callable[..., jax.Array]
Axes = Sequence[str | None] | None

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

xavier_uniform = jax.nn.initializers.xavier_uniform()
zeros = jax.nn.initializers.zeros
ones = jax.nn.initializers.ones


def to_dtype(name: Any) -> jnp.dtype:
  """'float32' | 'bfloat16' | 'float16' (or a dtype) -> jnp dtype."""
  if not isinstance(name, str):
    return jnp.dtype(name)
  if name not in _DTYPES:
    raise ValueError(f"unknown dtype {name!r}; expected one of {sorted(_DTYPES)}")
  return jnp.dtype(_DTYPES[name])


def make_param(init: Initializer, rngs: nnx.Rngs | None, shape: Sequence[int],
               dtype: jnp.dtype, axes: Axes) -> nnx.Param:
  """An `nnx.Param` with logical axis names `axes` (one per dim, None = replicated)."""
  if axes is not None and len(axes) != len(shape):
    raise ValueError(f"logical axes {tuple(axes)} do not match parameter shape {tuple(shape)}")
  key = rngs.params() if rngs is not None else jax.random.key(0)
  value = init(key, tuple(shape), dtype)
  if axes is None:
    return nnx.Param(value)
  return nnx.Param(value, out_sharding=tuple(axes))


class Linear(nnx.Module):
  """y = x @ kernel + bias, computed in `dtype`.

  kernel: [in, out] (torch stores [out, in]); bias: [out].
  """

  def __init__(self, in_features: int, out_features: int, *, axes: tuple[str | None, str | None],
               use_bias: bool = True, kernel_init: Initializer = xavier_uniform,
               bias_init: Initializer = zeros, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.in_features = in_features
    self.out_features = out_features
    self.dtype = dtype
    self.kernel = make_param(kernel_init, rngs, (in_features, out_features), param_dtype, axes)
    self.bias = (make_param(bias_init, rngs, (out_features,), param_dtype, (axes[1],))
                 if use_bias else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x[..., in] -> [..., out] in `self.dtype`."""
    if x.shape[-1] != self.in_features:
      raise ValueError(f"Linear expects inputs with last dim {self.in_features}, "
                       f"got shape {x.shape}")
    y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


def layer_norm(x: jax.Array, eps: float, scale: jax.Array | None = None,
               bias: jax.Array | None = None) -> jax.Array:
  """LayerNorm over the last axis in f32 (biased variance, like torch). Returns f32."""
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=-1, keepdims=True)
  xc = x - mean
  var = jnp.mean(jnp.square(xc), axis=-1, keepdims=True)
  y = xc * jax.lax.rsqrt(var + eps)
  if scale is not None:
    y = y * scale.astype(jnp.float32)
  if bias is not None:
    y = y + bias.astype(jnp.float32)
  return y


def rms_norm(x: jax.Array, eps: float, scale: jax.Array | None = None) -> jax.Array:
  """RMSNorm over the last axis in f32 (torch.nn.RMSNorm). Returns f32."""
  x = x.astype(jnp.float32)
  y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)
  if scale is not None:
    y = y * scale.astype(jnp.float32)
  return y


class LayerNorm(nnx.Module):
  """Affine LayerNorm computed in f32 (diffusers FP32LayerNorm with elementwise_affine)."""

  def __init__(self, dim: int, *, eps: float, axes: Axes = ("embed",), param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.eps = eps
    self.scale = make_param(ones, rngs, (dim,), param_dtype, axes)
    self.bias = make_param(zeros, rngs, (dim,), param_dtype, axes)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x[..., D] -> f32[..., D]."""
    return layer_norm(x, self.eps, self.scale[...], self.bias[...])


class RMSNorm(nnx.Module):
  """RMSNorm with a learned scale, computed in f32."""

  def __init__(self, dim: int, *, eps: float, axes: Axes, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.eps = eps
    self.scale = make_param(ones, rngs, (dim,), param_dtype, axes)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x[..., D] -> f32[..., D]."""
    return rms_norm(x, self.eps, self.scale[...])


class FeedForward(nnx.Module):
  """fc2(gelu_tanh(fc1(x))): Wan's FFN (diffusers `ffn.net.0.proj`, `ffn.net.2`)."""

  def __init__(self, dim: int, hidden: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    self.fc1 = Linear(dim, hidden, axes=("embed", "mlp"), dtype=dtype, param_dtype=param_dtype,
                      rngs=rngs)
    self.fc2 = Linear(hidden, dim, axes=("mlp", "embed"), dtype=dtype, param_dtype=param_dtype,
                      rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x[..., D] -> [..., D]."""
    return self.fc2(jax.nn.gelu(self.fc1(x), approximate=True))


REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def remat(fn: Callable, policy: str, *, in_scan: bool = True) -> Callable:
  """Wraps `fn` in `jax.checkpoint` with the named policy ('none' returns fn unchanged).

  `in_scan`: the function is a `lax.scan` body, where CSE prevention is unnecessary.
  """
  if policy not in REMAT_POLICIES:
    raise ValueError(f"unknown remat_policy {policy!r}; expected one of {sorted(REMAT_POLICIES)}")
  if policy == "none":
    return fn
  return jax.checkpoint(fn, policy=REMAT_POLICIES[policy], prevent_cse=not in_scan)
