"""Ready-made MPM bodies."""

from __future__ import annotations

from .model import MPMModel


def walker2d(
    res: int = 128,
    density: float = 1000.0,
    youngs_modulus: float = 2.5e4,
    poisson_ratio: float = 0.25,
    offset=(0.1, 0.03),
    scale: float = 1.0,
) -> MPMModel:
    """DiffTaichi's diffmpm soft robot: a 0.3 x 0.1 m body on four 0.05 x 0.1 m legs, each leg an actuator that
    stretches or contracts along the vertical. 2 x 2 particles per cell of the `res`^2 grid on [0, 1]^2 (2,976
    particles at res = 128).

    diffmpm's constants in its own units (E = mu = lambda = 10 per unit density, active stress 4) become, for a
    density rho: Young's modulus 25 rho, Poisson ratio 0.25 (mu = lambda) and actuation strength 4 rho, the
    defaults here with rho = 1000 kg/m^2. `scale` shrinks the robot and its offset (for small test grids).
    """
    model = MPMModel(dim=2, res=res, dx=1.0 / res, ppc=4, source="walker2d")
    model.add_material(
        "rubber", "elastic", density=density, youngs_modulus=youngs_modulus, poisson_ratio=poisson_ratio
    )
    ox, oy = offset[0] * scale, offset[1] * scale

    def rect(x, y, w, h, actuator):
        x, y, w, h = (v * scale for v in (x, y, w, h))
        # diffmpm's sampling: int(w / dx) * 2 particles across, spaced evenly over the rectangle
        model.add_box(
            [ox + x, oy + y],
            [ox + x + w, oy + y + h],
            "rubber",
            actuator=actuator,
            ppc=4,
            name="body" if actuator < 0 else f"leg{actuator}",
        )

    rect(0.0, 0.1, 0.3, 0.1, -1)
    rect(0.0, 0.0, 0.05, 0.1, 0)
    rect(0.05, 0.0, 0.05, 0.1, 1)
    rect(0.2, 0.0, 0.05, 0.1, 2)
    rect(0.25, 0.0, 0.05, 0.1, 3)
    return model
