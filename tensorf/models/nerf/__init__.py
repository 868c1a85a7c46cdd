from tensorf.models.nerf.mipnerf import MipNeRF
from tensorf.models.nerf.model import NeRF

__all__ = ["MipNeRF", "NeRF"]
