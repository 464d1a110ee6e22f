"""Triangle-mesh cloth: FEM membrane, dihedral bending, aerodynamics, colliders, kinematic handles."""

from .model import ClothModel
from .system import ClothSystem

__all__ = ["ClothModel", "ClothSystem"]
