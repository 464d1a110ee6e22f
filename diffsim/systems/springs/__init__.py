from .model import SpringModel
from .system import SpringSystem

__all__ = ["SpringModel", "SpringSystem"]
