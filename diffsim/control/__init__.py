from .controllers import MLP, Controller, OpenLoop, Periodic

__all__ = ["Controller", "OpenLoop", "Periodic", "MLP"]
