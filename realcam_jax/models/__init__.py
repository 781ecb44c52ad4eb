"""realcam_jax.models."""
