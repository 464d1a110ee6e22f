"""diffsim: differentiable physics simulation on Taichi.

import diffsim
diffsim.init(arch="cpu", precision="f64")
system = diffsim.SpringSystem(model, dt=1e-3)
sim = diffsim.Simulation(system, steps=500, loss=diffsim.FinalPositionLoss(target))
loss, grads = sim.value_and_grad()
"""

import os as _os

# Taichi prints a banner on stdout when imported, which would corrupt `diffsim ... --json` output; set
# ENABLE_TAICHI_HEADER_PRINT=1 to see it (`diffsim info` reports the versions).
_os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "0")

from .control import MLP, OpenLoop, Periodic
from .engine.gradcheck import gradcheck
from .engine.params import Parameter, ParameterSet
from .engine.simulation import Simulation
from .errors import DiffsimError, SimulationError
from .optim.fit import LBFGSB, SGD, Adam, fit
from .optim.losses import CenterOfMassLoss, CenterOfMassTargetLoss, FinalPositionLoss, Loss, PointLoss
from .runtime import available_archs, init
from .scale import sweep
from .systems.cloth import ClothModel, ClothSystem
from .systems.mpm import MPMModel, MPMSystem
from .systems.rigid import RigidModel, RigidSystem
from .systems.smoke import SmokeModel, SmokeSystem
from .systems.springs import SpringModel, SpringSystem

__version__ = "0.1.0"

__all__ = [
    "init",
    "available_archs",
    "Simulation",
    "Parameter",
    "ParameterSet",
    "gradcheck",
    "DiffsimError",
    "SimulationError",
    "Loss",
    "PointLoss",
    "FinalPositionLoss",
    "CenterOfMassLoss",
    "CenterOfMassTargetLoss",
    "SGD",
    "Adam",
    "LBFGSB",
    "fit",
    "sweep",
    "OpenLoop",
    "Periodic",
    "MLP",
    "SpringModel",
    "SpringSystem",
    "ClothModel",
    "ClothSystem",
    "MPMModel",
    "MPMSystem",
    "RigidModel",
    "RigidSystem",
    "SmokeModel",
    "SmokeSystem",
]
