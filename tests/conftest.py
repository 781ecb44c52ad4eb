"""Test setup: 8 fake CPU devices for sharding tests (must be set before jax is imported)."""

import os

# 8 fake CPU devices for sharding tests; backend optimisation level 0 halves XLA's CPU
# compile time, which dominates these tiny-model tests (numerics are unchanged).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                      "--xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def fast_compile():
  """Shorter XLA compiles for a module (the VAE is many small convs); numerics unchanged.

  Use with `pytestmark = pytest.mark.usefixtures("fast_compile")`.
  """
  old = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", old)
