from tensorf.models.nerf.model import NeRF

__all__ = ["NeRF"]
