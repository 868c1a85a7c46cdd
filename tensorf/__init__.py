"""tensorf-jax: TensoRF radiance fields in JAX (data -> rays -> fields -> rendering -> training)."""
