"""Rigid bodies in 2D and 3D: penalty contacts with smoothed Coulomb friction, penalty joints, motors, springs.

One step (semi-implicit Euler, dt) is one kernel; its stages are top-level loops (Taichi reverses those correctly):

1. joint coordinates q_j (hinge angle or slide) and rates, for limits, motors and the controller;
2. the controller (the MLP sees each body's position and velocity relative to the centre of mass, its orientation
   and angular velocity, and the joint coordinates);
3. per body, the force is *stored*: F = m g, torque = 0;
4. contacts, one loop over every candidate (a point of one shape against the geometry of another, the ground or an
   obstacle; see `model.contact_candidates`), += on both bodies at the contact point p:
     depth d = r_A - dist_B(point),  f_n = max(0, k d - c v_n)            (d > 0)
     c = 2 zeta(e) sqrt(k m_n)    (zeta: the damping ratio giving restitution e, `geometry.damping_ratio`)
     f_t = -mu f_n v_t / (sqrt(|v_t|^2 + eps^2) + mu f_n dt n_g / (STICK_FRACTION m_t))   (smoothed Coulomb)
   with m_n the effective mass at the contact along the normal, 1 / sum(1/m + (r x n) . I^-1 (r x n)), and
   m_t = 1 / (1/m_A + 1/m_B + |r_A|^2 tr I_A^-1 + |r_B|^2 tr I_B^-1), a lower
   bound of the effective mass at the contact along any tangent, and n_g (ground contacts only) the number of the
   body's points that can touch the ground at once: sticking, the friction of all of a body's points together
   removes at most STICK_FRACTION of its slip in one step, so it does not overshoot at any dt (removing the whole
   slip at each of a foot's two corners made the slip flip sign every step and the walker's gradients explode,
   docs/rigid.md), and eps (m/s) smooths the switch between sliding and sticking;
5. joints: a spring-damper F = k C + c dC/dt pulls the anchors together (C = p_b - p_a, minus its component along
   the axis for a prismatic joint); angular terms align a 3D hinge's axes (tau = k_r u_b x u_a), lock the relative
   rotation of fixed and prismatic joints (tau = k_r vee(R_a R0 R_b^T)), and push a limited coordinate back inside
   [lower, upper];
6. motors on joints: tau = scale a (torque), or tau = kp (scale a - q) - kd dq/dt (position), a the action;
7. springs between bodies: f = k (L - L0 (1 + alpha a)) + c dL/dt along the spring;
8. integration: v' = v + dt F / m (then the table's friction in 2D, as the mass-spring system's implicit form),
   x' = x + dt v'. 2D: w' = w + dt tau / I, theta' = theta + dt w'. 3D, with angular momentum L = R I_b R^T w and
   w(q) = R(q) I_b^-1 R(q)^T L':
     L' = L + dt tau,   q_h = normalize(q + dt/4 [0, w(q)] q),   q' = normalize(q + dt/2 [0, w(q_h)] q),
     w' = w(q')
   so the gyroscopic term (w x I w) is included exactly (torque-free, L is conserved to rounding), |q| = 1, and
   the midpoint rotation keeps the energy error second order in dt.

Mass and inertia are computed from the shapes' sizes and the bodies' densities (or the given masses and inertias) in
`initialize`, so their gradients reach `shapes.size` and `bodies.density`. See docs/rigid.md.
"""

import math
import warnings

import numpy as np
import taichi as ti

from ... import runtime
from ...engine.fields import ConstantArrays, FieldGroup, MassView
from ...engine.state import FieldSpec
from ...engine.system import System, check_controller_outputs, check_step, default_gravity
from ...errors import DiffsimError
from . import geometry as geo
from .kernels import BALL, BOX_ID, CAPSULE_ID, FIXED, PRISMATIC, REVOLUTE, SPHERE_ID, RigidKernels
from .model import (
    MOTOR_ID,
    ON_BODY,
    ON_OBSTACLE,
    RigidModel,
    contact_candidates,
)

#: on the CPU, below this many elements (batch x max(bodies, shapes, contact candidates, joints)) the loops run
#: serially (`runtime.serial_loops`). Measured on 2 cores (docs/performance.md): billiards racks of 211 and 466
#: balls (23k and 110k candidates) took 0.46-0.60 and 2.0-3.2 s per iteration serially, 1.06-1.20 and 3.3-4.3 s
#: with parallel loops (the parallel adjoint's atomic adds).
SERIAL_BELOW = 1_000_000


#: a contact at the first frame deeper than this fraction of the smaller shape's size is reported
START_PENETRATION = 1e-3


@ti.data_oriented
class RigidSystem(RigidKernels, System):
    kind = "rigid"

    def __init__(
        self,
        model: RigidModel,
        dt: float,
        gravity=None,
        ground: float | None = 0.0,
        ground_friction: float = 0.5,
        ground_restitution: float = 0.5,
        ground_stiffness: float = 1e4,
        contact_friction: float = 0.5,
        contact_restitution: float = 0.5,
        contact_stiffness: float = 1e4,
        friction_smoothing: float = 1e-2,
        table_friction: float | None = None,
        table_gravity: float = 9.81,
        controller=None,
        substeps: int = 1,
        batch: int = 1,
        per_batch: tuple[str, ...] = (),
        requires_grad=None,
    ):
        super().__init__(batch, requires_grad=requires_grad)
        src = model.source
        check_step(dt, substeps, src)
        if not (friction_smoothing > 0 and math.isfinite(friction_smoothing)):
            raise DiffsimError(f"must be > 0, got {friction_smoothing}", where=f"{src}: friction_smoothing")
        arrays = model.finalize()
        self.model = model
        self.arrays = arrays
        self.dim = dim = model.dim
        self.n = n = arrays["n"]
        self.ns = len(arrays["shape_kind"])
        self.no = len(arrays["obstacle_position"])
        self.nj = arrays["n_joints"]
        self.nm = len(arrays["motors"]["joint"])
        self.nk = len(arrays["springs"]["a"])
        self.dt = float(dt)
        self.substeps = int(substeps)
        self.has_ground = ground is not None
        self.has_table = table_friction is not None
        if self.has_table and dim != 2:
            raise DiffsimError("table friction is for 2D scenes seen from above", where=f"{src}: table")
        self.eps = float(friction_smoothing)
        self.table_gravity = float(table_gravity)
        self.candidates = contact_candidates(arrays, self.has_ground, model.body_collisions)
        self.nc = len(self.candidates)
        self.has_contact_material = any(c[6] == 1 for c in self.candidates)
        self.serial = runtime.serial_loops(self.batch * max(n, self.ns, self.nc, self.nj, 1), SERIAL_BELOW)
        gravity = default_gravity(gravity, dim, src)
        self._pb = set(per_batch)
        self._used_pb = set()
        self._build_params(
            arrays,
            gravity,
            ground,
            ground_friction,
            ground_restitution,
            ground_stiffness,
            contact_friction,
            contact_restitution,
            contact_stiffness,
            table_friction,
        )
        unknown = self._pb - self._used_pb
        if unknown:
            raise DiffsimError(f"unknown parameter names {sorted(unknown)}", where="per_batch")
        self._build_fields(arrays)

        check_controller_outputs(controller, model.n_actuators, src, actuated="motors or springs")
        self.obs_per_body = 2 * dim + (2 if dim == 2 else 4) + (1 if dim == 2 else 3)
        self.n_obs = self.obs_per_body * n + 2 * self.nj
        self._attach_controller(controller, self.n_obs)
        self._checked_start = False
        self._check_time_step()

    # -- parameters ---------------------------------------------------------------------------------------------
    def _param(self, name, shape, value, **kw):
        self._used_pb.add(name)
        return self.add_param(name, shape, value, per_batch=name in self._pb, **kw)

    def _build_params(self, A, gravity, ground, g_mu, g_e, g_k, c_mu, c_e, c_k, table_mu):
        """Every parameter the model uses, in a fixed order: initial state, bodies and shapes, the environment
        (gravity, ground, contact material, table), joints, motors and springs."""
        self._build_initial_params(A)
        self._build_body_params(A)
        self._build_environment_params(gravity, ground, (g_mu, g_e, g_k), (c_mu, c_e, c_k), table_mu)
        self._build_joint_params(A)

    def _build_initial_params(self, A):
        """One set of initial-state parameters per body group ("" -> initial.position, "cue" -> initial.cue.*)."""
        dim = self.dim
        self.groups = []
        for group, members in A["groups"].items():
            prefix = "initial." + (f"{group}." if group else "")
            idx = np.asarray(members)
            g = {"members": idx, "size": len(idx)}
            g["x"] = self._param(prefix + "position", (len(idx), dim), A["x0"][idx], vector_dim=dim, unit="m")
            g["v"] = self._param(
                prefix + "velocity", (len(idx), dim), A["v0"][idx], vector_dim=dim, unit="m/s"
            )
            if dim == 2:
                g["rot"] = self._param(prefix + "angle", (len(idx),), A["rot0"][idx, 0], unit="rad")
                g["w"] = self._param(prefix + "angular_velocity", (len(idx),), A["w0"][idx, 0], unit="rad/s")
            else:
                g["rot"] = self._param(
                    prefix + "orientation",
                    (len(idx), 4),
                    A["rot0"][idx],
                    vector_dim=4,
                    doc="unit quaternion [w, x, y, z], normalised when used",
                )
                g["w"] = self._param(
                    prefix + "angular_velocity", (len(idx), 3), A["w0"][idx], vector_dim=3, unit="rad/s"
                )
            self.groups.append(g)

    def _build_body_params(self, A):
        """Densities, given masses and inertias, shape sizes, obstacles."""
        dim = self.dim
        self.has_density = len(A["density"]) > 0
        self.has_mass = len(A["mass"]) > 0
        self.has_inertia = len(A["inertia"]) > 0
        if self.has_density:
            self.density = self._param(
                "bodies.density",
                (len(A["density"]),),
                A["density"],
                transform="log",
                unit="kg/m^3 (kg/m^2 in 2D)",
                doc="of the bodies whose mass is not given",
            )
        if self.has_mass:
            self.mass = self._param(
                "bodies.mass",
                (len(A["mass"]),),
                A["mass"],
                transform="log",
                unit="kg",
                doc="of the bodies whose mass is given",
            )
        if self.has_inertia:
            shape = (len(A["inertia"]),) if dim == 2 else (len(A["inertia"]), 3)
            value = A["inertia"][:, 0] if dim == 2 else A["inertia"]
            self.inertia = self._param(
                "bodies.inertia",
                shape,
                value,
                transform="log",
                unit="kg m^2",
                vector_dim=None if dim == 2 else 3,
                doc="principal moments of the bodies whose inertia is given",
            )
        if self.ns:
            self.size = self._param(
                "shapes.size",
                (self.ns, 3),
                A["shape_size"],
                vector_dim=3,
                transform="log",
                unit="m",
                doc="sphere [r, 1, 1], box [half extents (, 1)], capsule [r, h, 1]",
            )
        if self.no:
            self.obstacle_position = self._param(
                "obstacles.position", (self.no, dim), A["obstacle_position"], vector_dim=dim, unit="m"
            )
            self.obstacle_size = self._param(
                "obstacles.size",
                (self.no, dim),
                A["obstacle_size"][:, :dim],
                vector_dim=dim,
                transform="log",
                unit="m",
                doc="half extents",
            )

    def _build_environment_params(self, gravity, ground, ground_material, contact_material, table_mu):
        """Gravity, the ground's height and material, the bodies' contact material, the 2D table's friction."""
        dim = self.dim
        g_mu, g_e, g_k = ground_material
        c_mu, c_e, c_k = contact_material
        self.gravity = self._param("gravity", (dim,), gravity, vector_dim=dim, unit="m/s^2")
        if self.has_ground:
            self.ground_height = self._param("ground.height", (), ground, unit="m")
            self.ground_friction = self._param("ground.friction", (), g_mu, bounds=(0, None))
            self.ground_restitution = self._param(
                "ground.restitution", (), g_e, bounds=(geo.MIN_RESTITUTION, 1.0)
            )
            self.ground_stiffness = self._param("ground.stiffness", (), g_k, transform="log", unit="N/m")
        if self.has_contact_material:
            self.contact_friction = self._param("contact.friction", (), c_mu, bounds=(0, None))
            self.contact_restitution = self._param(
                "contact.restitution", (), c_e, bounds=(geo.MIN_RESTITUTION, 1.0)
            )
            self.contact_stiffness = self._param("contact.stiffness", (), c_k, transform="log", unit="N/m")
        if self.has_table:
            self.table_friction = self._param(
                "table.friction",
                (),
                table_mu,
                bounds=(0, None),
                doc="deceleration mu g of bodies sliding on the table",
            )

    def _build_joint_params(self, A):
        """Joints (anchors, stiffness, damping, limits), motors and springs between bodies."""
        dim = self.dim
        J = A["joints"]
        if self.nj:
            nj = self.nj
            self.j_stiffness = self._param(
                "joints.stiffness", (nj,), J["stiffness"], transform="log", unit="N/m"
            )
            self.j_damping = self._param(
                "joints.damping", (nj,), J["damping"], bounds=(0, None), unit="N s/m"
            )
            self.j_ang_stiffness = self._param(
                "joints.angular_stiffness", (nj,), J["angular_stiffness"], bounds=(0, None), unit="N m/rad"
            )
            self.j_ang_damping = self._param(
                "joints.angular_damping", (nj,), J["angular_damping"], bounds=(0, None), unit="N m s/rad"
            )
            self.j_anchor_a = self._param(
                "joints.anchor_a",
                (nj, dim),
                J["anchor_a"],
                vector_dim=dim,
                unit="m",
                doc="in body a's frame (world point if a is the world)",
            )
            self.j_anchor_b = self._param(
                "joints.anchor_b", (nj, dim), J["anchor_b"], vector_dim=dim, unit="m", doc="in body b's frame"
            )
            lim = np.nonzero(J["limited"])[0]
            self.n_limited = len(lim)
            self.limit_slot_np = np.full(nj, -1)
            self.limit_slot_np[lim] = np.arange(len(lim))
            if len(lim):
                self.j_lower = self._param(
                    "joints.lower", (len(lim),), J["lower"][lim], unit="rad or m", doc="of the limited joints"
                )
                self.j_upper = self._param("joints.upper", (len(lim),), J["upper"][lim], unit="rad or m")
                self.j_limit_stiffness = self._param(
                    "joints.limit_stiffness", (len(lim),), J["limit_stiffness"][lim], bounds=(0, None)
                )
                self.j_limit_damping = self._param(
                    "joints.limit_damping", (len(lim),), J["limit_damping"][lim], bounds=(0, None)
                )
        M = A["motors"]
        if self.nm:
            self.m_scale = self._param(
                "motors.scale",
                (self.nm,),
                M["scale"],
                doc="torque (N m) or force (N) per unit action; position mode: rad or m",
            )
            self.m_kp = self._param("motors.kp", (self.nm,), M["kp"], bounds=(0, None), unit="N m/rad")
            self.m_kd = self._param("motors.kd", (self.nm,), M["kd"], bounds=(0, None), unit="N m s/rad")
        S = A["springs"]
        if self.nk:
            self.s_stiffness = self._param(
                "springs.stiffness", (self.nk,), S["stiffness"], transform="log", unit="N/m"
            )
            self.s_damping = self._param(
                "springs.damping", (self.nk,), S["damping"], bounds=(0, None), unit="N s/m"
            )
            self.s_rest = self._param(
                "springs.rest_length", (self.nk,), S["rest_length"], transform="log", unit="m"
            )
            self.s_actuation = self._param("springs.actuation", (self.nk,), S["actuation"], unit="1")

    # -- constant fields ----------------------------------------------------------------------------------------
    def _build_fields(self, A):
        """The constant fields: per body and shape, contact candidates, joints, motors and springs (grouped by kind
        for specialised loops), and the derived mass properties. All share one SNode tree: Taichi creates a tree per
        field allocated after the first kernel launch, and a process can hold only a few hundred trees."""
        group = FieldGroup()
        put = ConstantArrays(group)
        self._body_fields(A, put)
        self._contact_fields(A, put)
        self._joint_fields(A, put)
        self._derived_fields(A, group)
        group.finalize()
        # `CenterOfMassLoss` weighs bodies by `point_mass.field[b * bstride, i]`
        self.point_mass = MassView(self.body_mass, bstride=1)

    def _body_fields(self, A, put):
        """Mass modes and slots, shapes and obstacles, the initial-state groups."""
        dim = self.dim
        self.mass_mode = put.ints(A["mass_mode"])
        self.mass_slot = put.ints(A["mass_slot"])
        self.inertia_slot = put.ints(A["inertia_slot"])
        self.shape_body = put.ints(A["shape_body"])
        self.shape_kind = put.ints(A["shape_kind"])
        self.shape_offset = put.vecs(A["shape_offset"], dim)
        self.shape_rot = put.mats(A["shape_rot"], dim, dim)
        self.obstacle_rot = put.mats(A["obstacle_rot"], dim, dim)
        self.group_members = [put.ints(g["members"]) for g in self.groups]
        # Taichi resolves lists of fields indexed by a static index; not dicts of parameters
        self._gx = [g["x"].field for g in self.groups]
        self._gv = [g["v"].field for g in self.groups]
        self._gr = [g["rot"].field for g in self.groups]
        self._gw = [g["w"].field for g in self.groups]
        self._gstride = [tuple(g[k].bstride for k in ("x", "v", "rot", "w")) for g in self.groups]
        self._gsize = [g["size"] for g in self.groups]

    def _contact_fields(self, A, put):
        """The contact candidates, one group per (point source, its shape kind, geometry tested against)."""
        dim = self.dim
        # Contact candidates grouped by (point source, its shape kind, geometry tested against): each group is a
        # loop specialised at compile time, so a scene compiles only the contact code it uses.
        shape_kinds = A["shape_kind"]
        groups: dict[tuple, list[int]] = {}
        for c, (a_on, a, _sign, b_on, _b, geom, _mat) in enumerate(self.candidates):
            a_kind = int(shape_kinds[a]) if a_on == ON_BODY else BOX_ID
            groups.setdefault((int(a_on), a_kind, int(b_on), int(geom)), []).append(c)
        self.contact_keys = list(groups)
        self.contact_sizes = [len(v) for v in groups.values()]
        self.cg_global = [put.ints(v) for v in groups.values()]
        self.cg_a = [put.ints([self.candidates[c][1] for c in v]) for v in groups.values()]
        self.cg_sign = [put.vecs([self.candidates[c][2] for c in v], dim) for v in groups.values()]
        self.cg_b = [put.ints([self.candidates[c][4] for c in v]) for v in groups.values()]

    def _joint_fields(self, A, put):
        """Joints, limits and motors grouped by joint kind (specialised loops, as the contacts), and springs."""
        dim = self.dim
        real, npr = runtime.real(), runtime.np_real()
        group = put.group
        J = A["joints"]
        nj = self.nj
        self.j_a = put.ints(J["a"] if nj else [])
        self.j_b = put.ints(J["b"] if nj else [])
        self.j_limit_slot = put.ints(self.limit_slot_np if nj else [])
        self.j_axis_a = put.vecs(J["axis_a"] if nj else [], dim)
        self.j_axis_b = put.vecs(J["axis_b"] if nj else [], dim)
        self.j_ref_a = put.vecs(J["ref_a"] if nj else [], dim)
        self.j_ref_b = put.vecs(J["ref_b"] if nj else [], dim)
        self.j_rel0 = put.mats(J["rel0"] if nj else [], dim, dim)
        self.j_angle0 = group.add(
            real, (max(nj, 1),), np.resize(np.asarray(J["angle0"] if nj else [0.0], dtype=npr), max(nj, 1))
        )
        kinds = J["kind"] if nj else np.zeros(0, dtype=np.int64)
        present = [k for k in (REVOLUTE, PRISMATIC, BALL, FIXED) if np.any(kinds == k)]
        self.joint_kinds = present
        self.jg_index = [put.ints(np.nonzero(kinds == k)[0]) for k in present]
        self.jg_size = [int(np.sum(kinds == k)) for k in present]
        limited = self.limit_slot_np >= 0 if nj else np.zeros(0, dtype=bool)
        self.limit_kinds = [k for k in present if np.any(limited & (kinds == k))]
        self.lg_index = [put.ints(np.nonzero(limited & (kinds == k))[0]) for k in self.limit_kinds]
        self.lg_size = [int(np.sum(limited & (kinds == k))) for k in self.limit_kinds]
        M = A["motors"]
        motor_kinds = kinds[M["joint"]] if self.nm else np.zeros(0, dtype=np.int64)
        self.motor_kinds = [k for k in present if np.any(motor_kinds == k)]
        self.mg_index = [put.ints(np.nonzero(motor_kinds == k)[0]) for k in self.motor_kinds]
        self.mg_size = [int(np.sum(motor_kinds == k)) for k in self.motor_kinds]
        self.m_joint = put.ints(M["joint"])
        self.m_mode = put.ints(M["mode"])
        self.m_actuator = put.ints(M["actuator"])
        S = A["springs"]
        self.s_a = put.ints(S["a"])
        self.s_b = put.ints(S["b"])
        self.s_anchor_a = put.vecs(S["anchor_a"] if self.nk else [], dim)
        self.s_anchor_b = put.vecs(S["anchor_b"] if self.nk else [], dim)
        self.s_actuator = put.ints(S["actuator"])

    def _derived_fields(self, A, group):
        """Mass properties per copy (parameters may be per copy), computed by `initialize` and read by the step;
        the start-penetration depths; the number of a body's points that can touch the ground."""
        dim, n, B = self.dim, self.n, self.batch
        real, npr = runtime.real(), runtime.np_real()

        def derived(n=None, m=None):
            return group.add(real, (B, n_), None, n=n, m=m, grad=True)

        n_ = n
        self.body_volume = derived()  # unit-density mass of the shapes
        self.body_mass = derived()
        self.body_inv_mass = derived()
        self.body_inv_trace = derived()  # tr I^-1, rotation invariant
        if dim == 2:
            self.body_unit_inertia, self.body_inertia, self.body_inv_inertia = derived(), derived(), derived()
        else:
            self.body_unit_inertia, self.body_inertia, self.body_inv_inertia = (
                derived(3, 3) for _ in range(3)
            )
        self._derived = [
            self.body_volume,
            self.body_mass,
            self.body_inv_mass,
            self.body_inv_trace,
            self.body_unit_inertia,
            self.body_inertia,
            self.body_inv_inertia,
        ]
        self.start_depth = group.add(real, (B, max(self.nc, 1)), None)
        # how many points of each body can touch the ground at once (sphere 1, capsule 2, box 2^(dim-1)): the
        # friction at each of them takes that share of the body's slip (see `_contact`)
        points = np.zeros(max(n, 1))
        per_kind = {SPHERE_ID: 1, BOX_ID: 2 ** (dim - 1), CAPSULE_ID: 2}
        for body, kind in zip(A["shape_body"], A["shape_kind"], strict=True):
            points[int(body)] += per_kind[int(kind)]
        self.body_ground_points = group.add(real, points.shape, np.maximum(points, 1.0).astype(npr))

    # -- description --------------------------------------------------------------------------------------------
    def body_index(self, name: str) -> int:
        names = self.arrays["names"]
        if name not in names:
            raise DiffsimError(f"no body named {name!r}; bodies: {', '.join(names)}")
        return names.index(name)

    def masses(self) -> np.ndarray:
        """Body masses (kg), (batch, n), as the last `initialize` computed them (`mass_properties` first)."""
        return self.body_mass.to_numpy().astype(np.float64)

    def inertias(self) -> np.ndarray:
        """Body-frame inertia (kg m^2): (batch, n) in 2D, (batch, n, 3, 3) in 3D."""
        return self.body_inertia.to_numpy().astype(np.float64)

    def mass_properties(self) -> None:
        """Compute masses and inertias from the current parameters without a rollout."""
        self._mass_kernel()

    def _inverse_masses(self):
        """(1 / m per body, its largest inverse moment (tr I^-1 in 3D), the inverse effective mass at its farthest
        point), each the worst copy's."""
        self.mass_properties()
        A = self.arrays
        inv_m = 1.0 / self.masses().min(axis=0)  # the lightest copy
        if self.dim == 2:
            inv_i = (1.0 / self.inertias()).max(axis=0)
        else:
            inv_i = np.array([np.trace(np.linalg.inv(i)) for i in self.inertias().reshape(-1, 3, 3)])
            inv_i = inv_i.reshape(self.batch, self.n).max(axis=0)
        reach = np.zeros(self.n)  # the farthest point of a body's shapes from its centre
        if self.ns:
            size = self.size.numpy().reshape(-1, self.ns, 3).max(axis=0)
            for k in range(self.ns):
                kind = A["shape_kind"][k]
                extent = {0: size[k, 0], 1: np.linalg.norm(size[k, : self.dim]), 2: size[k, 0] + size[k, 1]}[
                    kind
                ]
                i = A["shape_body"][k]
                reach[i] = max(reach[i], np.linalg.norm(A["shape_offset"][k]) + extent)
        point = inv_m + reach**2 * inv_i
        return inv_m, inv_i, point

    def _spring_dampers(self, inv_m, inv_i, point) -> list:
        """Every spring-damper of the model as (k, c, 1 / effective mass, what): ground and body contacts, joint
        anchors, angular terms and limits, position motors, springs."""
        A = self.arrays
        names = A["names"]
        items = []  # (k, c, 1/m, description)

        def top(p):
            return float(np.max(p.numpy()))

        def add(k, c, inv, what):
            items.append((k, c, inv, what))

        if self.has_ground:
            i = int(np.argmax(point))
            k = top(self.ground_stiffness)
            zeta = _damping_ratio(float(np.min(self.ground_restitution.numpy())))
            add(k, 2 * zeta * math.sqrt(k / point[i]), point[i], f"ground contact of body {names[i]!r}")
        if self.has_contact_material and self.n > 1:
            order = np.argsort(point)[-2:]
            inv = float(point[order].sum())
            k = top(self.contact_stiffness)
            zeta = _damping_ratio(float(np.min(self.contact_restitution.numpy())))
            add(k, 2 * zeta * math.sqrt(k / inv), inv, "contacts between bodies")

        def at(body, anchor):
            return 0.0 if body < 0 else inv_m[body] + float(anchor @ anchor) * inv_i[body]

        def rot(body):
            return 0.0 if body < 0 else inv_i[body]

        if self.nj:
            J = A["joints"]
            pa = self.j_anchor_a.numpy().reshape(-1, self.nj, self.dim)[0]
            pb = self.j_anchor_b.numpy().reshape(-1, self.nj, self.dim)[0]
            per = {
                key: getattr(self, attr).numpy().reshape(-1, self.nj).max(axis=0)
                for key, attr in (
                    ("k", "j_stiffness"),
                    ("c", "j_damping"),
                    ("kr", "j_ang_stiffness"),
                    ("cr", "j_ang_damping"),
                )
            }
            for j in range(self.nj):
                a, b = J["a"][j], J["b"][j]
                label = f"joint {j} ({names[b]!r})"
                add(per["k"][j], per["c"][j], at(a, pa[j]) + at(b, pb[j]), label)
                angular = J["kind"][j] in (FIXED, PRISMATIC) or (self.dim == 3 and J["kind"][j] == REVOLUTE)
                if angular:
                    add(per["kr"][j], per["cr"][j], rot(a) + rot(b), label + " angular term")
                slot = self.limit_slot_np[j]
                if slot >= 0:
                    kl = float(self.j_limit_stiffness.numpy().reshape(-1, self.n_limited).max(axis=0)[slot])
                    cl = float(self.j_limit_damping.numpy().reshape(-1, self.n_limited).max(axis=0)[slot])
                    inv = at(a, pa[j]) + at(b, pb[j]) if J["kind"][j] == PRISMATIC else rot(a) + rot(b)
                    add(kl, cl, inv, label + " limit")
        if self.nm:
            M = A["motors"]
            kp = self.m_kp.numpy().reshape(-1, self.nm).max(axis=0)
            kd = self.m_kd.numpy().reshape(-1, self.nm).max(axis=0)
            for k in range(self.nm):
                j = M["joint"][k]
                if M["mode"][k] == MOTOR_ID["position"]:
                    a, b = A["joints"]["a"][j], A["joints"]["b"][j]
                    # a prismatic joint's motor is a force along the slide (linear effective mass, as for its limit);
                    # a revolute joint's a torque (effective inertia)
                    inv = (
                        at(a, pa[j]) + at(b, pb[j])
                        if A["joints"]["kind"][j] == PRISMATIC
                        else rot(a) + rot(b)
                    )
                    add(kp[k], kd[k], inv, f"position motor {k}")
        if self.nk:
            S = A["springs"]
            ks = self.s_stiffness.numpy().reshape(-1, self.nk).max(axis=0)
            cs = self.s_damping.numpy().reshape(-1, self.nk).max(axis=0)
            for k in range(self.nk):
                add(
                    ks[k],
                    cs[k],
                    at(S["a"][k], S["anchor_a"][k]) + at(S["b"][k], S["anchor_b"][k]),
                    f"spring {k}",
                )
        return items

    def stability_margin(self) -> tuple[float, str, float]:
        """(margin, what, largest stable dt) for the stiffest spring-damper of the model.

        Each contact, joint anchor, angular joint term, joint limit, position motor and spring is a spring k with a
        dashpot c acting on an effective mass m (at the point where it acts, rotation included, bounded with
        tr I^-1; for torques an effective inertia). Semi-implicit Euler is stable for it when
        (omega dt)^2 + 2 c dt / m < 4 with omega^2 = k / m: margin is the largest left-hand side / 4 (> 1: unstable)."""
        dt = self.dt
        items = self._spring_dampers(*self._inverse_masses())
        worst, what, dt_max = 0.0, "", math.inf
        for k, c, inv, label in items:
            margin = ((k * inv) * dt * dt + 2 * c * inv * dt) / 4
            # the largest stable dt: (k inv) dt^2 + 2 c inv dt = 4
            a2, a1 = k * inv, 2 * c * inv
            limit = (
                (-a1 + math.sqrt(a1 * a1 + 16 * a2)) / (2 * a2)
                if a2 > 0
                else (4 / a1 if a1 > 0 else math.inf)
            )
            if margin > worst:
                worst, what = margin, label
            dt_max = min(dt_max, limit)
        return worst, what, dt_max

    def stable_dt(self) -> tuple[float, str]:
        """(the largest stable dt in s over every spring-damper of the model, the stiffest one's name)."""
        _margin, what, dt_max = self.stability_margin()
        return dt_max, f"the {what}"

    def _check_time_step(self) -> None:
        margin, what, dt_max = self.stability_margin()
        if margin > 1.0:
            warnings.warn(
                f"{self.model.source}: dt={self.dt:g} s is above the stability limit of semi-implicit Euler for "
                f"the {what} ((omega dt)^2 + 2 c dt / m = {4 * margin:.3g} > 4); the model needs dt < {dt_max:.3g} s",
                stacklevel=3,
            )

    def instability_hint(self) -> str:
        margin, what, dt_max = self.stability_margin()
        return f"dt={self.dt:g} s; the {what} needs dt < {dt_max:.3g} s" if math.isfinite(dt_max) else ""

    def field_specs(self) -> list[FieldSpec]:
        dim, n = self.dim, self.n
        adim = None if dim == 2 else 3
        specs = [
            FieldSpec("x", (n,), dim),
            FieldSpec("v", (n,), dim),
            FieldSpec("angle", (n,), None) if dim == 2 else FieldSpec("q", (n,), 4),
            FieldSpec("w", (n,), adim),
            # per step, computed once and read by the contact, joint and motor loops (smaller reverse kernels)
            FieldSpec("rot", (n,), dim * dim, kind="scratch"),  # body rotation matrix, row-major
            FieldSpec("force", (n,), dim, kind="scratch"),
            FieldSpec("torque", (n,), adim, kind="scratch"),
        ]
        if self.ns:
            specs += [
                FieldSpec("shape_centre", (self.ns,), dim, kind="scratch"),
                FieldSpec("shape_rot", (self.ns,), dim * dim, kind="scratch"),
            ]
        if self.nj:
            specs += [
                FieldSpec("joint_q", (self.nj,), None, kind="scratch"),
                FieldSpec("joint_qd", (self.nj,), None, kind="scratch"),
                FieldSpec("joint_pa", (self.nj,), dim, kind="scratch"),  # world anchors
                FieldSpec("joint_pb", (self.nj,), dim, kind="scratch"),
                FieldSpec("joint_va", (self.nj,), dim, kind="scratch"),  # their velocities
                FieldSpec("joint_vb", (self.nj,), dim, kind="scratch"),
                FieldSpec("joint_axis", (self.nj,), dim, kind="scratch"),
            ]  # world axis (fixed in a)
        if self.controller is not None:
            if self.has_observation:
                specs += [
                    FieldSpec("com", (), dim, kind="scratch"),
                    FieldSpec("vcom", (), dim, kind="scratch"),
                    FieldSpec("mtot", (), None, kind="scratch"),
                    FieldSpec("obs", (self.n_obs,), None, kind="scratch"),
                ]
            specs += self.controller.field_specs()
        return specs

    def _warn_start_penetration(self, s) -> None:
        if not self.nc:
            return
        self._start_depths(s)
        depth = self.start_depth.to_numpy()[:, : self.nc].max(axis=0)
        sizes = self.size.numpy() if self.ns else None
        names = self.arrays["names"]
        reported = set()
        lines = []
        for c in np.argsort(-depth):
            if depth[c] <= 0:
                break
            a_on, a, _sign, b_on, bi, _geom, _mat = self.candidates[c]
            scale = min(
                sizes.reshape(-1, self.ns, 3)[0, a, : self.dim].min() if a_on == ON_BODY else np.inf,
                sizes.reshape(-1, self.ns, 3)[0, bi, : self.dim].min() if b_on == ON_BODY else np.inf,
            )
            if depth[c] <= START_PENETRATION * (scale if np.isfinite(scale) else 1.0):
                continue
            who = []
            for on, idx in ((a_on, a), (b_on, bi)):
                if on == ON_BODY:
                    who.append(f"body {names[self.arrays['shape_body'][idx]]!r}")
                elif on == ON_OBSTACLE:
                    who.append(f"obstacle {idx}")
                else:
                    who.append("the ground")
            key = tuple(who)
            if key in reported:
                continue
            reported.add(key)
            lines.append(f"{who[0]} and {who[1]} overlap by {depth[c]:.3g} m")
        if lines:
            more = f" (and {len(lines) - 5} more)" if len(lines) > 5 else ""
            warnings.warn(
                f"{self.model.source}: penetration at the start: "
                + "; ".join(lines[:5])
                + more
                + "; the contact force will push them apart violently",
                stacklevel=4,
            )

    # -- analysis -----------------------------------------------------------------------------------------------
    def energy(self, traj: dict[str, np.ndarray]) -> np.ndarray:
        """Kinetic (translational + rotational) plus gravitational energy per frame and copy (J); contacts, joints
        and springs are not included. Uses the masses of the last `initialize`."""
        x, v, w = traj["x"], traj["v"], traj["w"]
        m = self.masses()  # (B, n)
        inertia = self.inertias()
        g = np.broadcast_to(self.gravity.numpy(), (x.shape[1], self.dim))
        ke = 0.5 * np.einsum("bi,fbid->fb", m, v * v)
        if self.dim == 2:
            ke += 0.5 * np.einsum("bi,fbi->fb", inertia, w * w)
        else:
            from .model import quaternion_matrix  # noqa: PLC0415

            q = traj["q"]
            for fr in range(x.shape[0]):
                for b in range(x.shape[1]):
                    for i in range(self.n):
                        R = quaternion_matrix(q[fr, b, i])
                        wb = R.T @ w[fr, b, i]
                        ke[fr, b] += 0.5 * wb @ inertia[b, i] @ wb
        return ke - np.einsum("bi,fbid,bd->fb", m, x, g)

    def angular_momentum(self, traj: dict[str, np.ndarray]) -> np.ndarray:
        """Total angular momentum about the origin per frame and copy: sum m x x v + I_world w ((F, B) in 2D,
        (F, B, 3) in 3D)."""
        x, v, w = traj["x"], traj["v"], traj["w"]
        m = self.masses()
        inertia = self.inertias()
        if self.dim == 2:
            orbital = np.einsum("bi,fbi->fb", m, x[..., 0] * v[..., 1] - x[..., 1] * v[..., 0])
            return orbital + np.einsum("bi,fbi->fb", inertia, w)
        from .model import quaternion_matrix  # noqa: PLC0415

        out = np.einsum("bi,fbid->fbd", m, np.cross(x, v))
        q = traj["q"]
        for fr in range(x.shape[0]):
            for b in range(x.shape[1]):
                for i in range(self.n):
                    R = quaternion_matrix(q[fr, b, i])
                    out[fr, b] += R @ inertia[b, i] @ R.T @ w[fr, b, i]
        return out


def _damping_ratio(e: float) -> float:
    """numpy twin of `geometry.damping_ratio`, for the stability check."""
    target = -math.log(e)
    z = target / math.sqrt(math.pi**2 + target * target)
    for _ in range(4):
        one = 1.0 - z * z
        arc = math.pi - 2.0 * math.asin(z)
        z -= (arc * z / math.sqrt(one) - target) / (arc / (one * math.sqrt(one)) - 2.0 * z / one)
    return z
