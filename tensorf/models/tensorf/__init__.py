"""TensoRF: the jittable model (model.py) and its host-side schedule (schedule.py)."""

from tensorf.models.tensorf.model import TensoRF
from tensorf.models.tensorf.schedule import TensoRFSchedule

__all__ = ["TensoRF", "TensoRFSchedule"]
