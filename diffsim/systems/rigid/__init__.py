from .model import RigidModel
from .system import RigidSystem

__all__ = ["RigidModel", "RigidSystem"]
