"""Eulerian smoke: incompressible flow on a MAC grid in 2D and 3D, advected scalars, a differentiable pressure
solve (conjugate gradients forward, an adjoint solve backward)."""

from .losses import CentroidLoss, ScalarLoss
from .model import SmokeModel
from .system import SmokeSystem

__all__ = ["SmokeModel", "SmokeSystem", "ScalarLoss", "CentroidLoss"]
