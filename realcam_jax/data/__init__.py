"""realcam_jax.data."""
