from tensorf.models.nerf.mipnerf import MipNeRF
from tensorf.models.nerf.mipnerf360 import MipNeRF360
from tensorf.models.nerf.model import NeRF

__all__ = ["MipNeRF", "MipNeRF360", "NeRF"]
