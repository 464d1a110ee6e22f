from .model import ArticulatedModel, load_robot
from .system import ArticulatedSystem

__all__ = ["ArticulatedModel", "ArticulatedSystem", "load_robot"]
