"""realcam_jax: RealCam (real-time novel-view video generation with camera control) in JAX/Flax."""

import flax as _flax

# Parameters carry *logical* axis names (see `realcam_jax.sharding`); shardings are
# derived from the rules table there and applied by `jax.jit(out_shardings=...)`,
# never eagerly at variable creation (which would need a mesh for every model build).
_flax.config.update("flax_always_shard_variable", False)

__version__ = "0.1.0"
