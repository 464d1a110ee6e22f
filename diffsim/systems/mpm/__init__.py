"""MLS-MPM (APIC): fluids, neo-Hookean solids, Drucker-Prager sand and actuated soft bodies in 2D and 3D."""

from .model import Material, MPMModel
from .system import MPMCollider, MPMSystem

__all__ = ["Material", "MPMModel", "MPMCollider", "MPMSystem"]
