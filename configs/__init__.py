"""Bundled `ml_collections` configs. Load with `realcam_jax.config.get_config("teacher:demo")`."""
