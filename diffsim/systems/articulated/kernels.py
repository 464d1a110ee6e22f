"""The articulated system's step as named stages (``ti.func``), unrolled over the tree at compile time.

A robot here has at most a few dozen joints, so every per-link and per-joint quantity of one copy lives in local
variables of one loop iteration over the batch: the loops over links and joints are `ti.static` (unrolled), the
tree's topology and constant geometry are baked into the kernel, and the only global reads are frame f of the state
and the parameters, the only global writes frame f + 1 (docs/developing.md, rules 1 and 2). Unrolled locals are each
assigned once (a Python list collects them: a value is appended right after its own name is defined, so no list
entry aliases a variable that changes later), so Taichi's reverse mode needs no autodiff stack.

Spatial quantities are 6-vectors split into an angular and a linear 3-vector, both expressed in the world frame at
the world origin (Featherstone's Plücker coordinates): a motion (w, v), a force (n, f). A link's spatial inertia at
the origin is (m, h = m c, I_O = I_c + m (|c|^2 E - c c^T)), which maps a motion to the force
(I_O w + h x v, m v - h x w); inertias of a subtree add up.

Stages of one step (frame f -> f + 1), MuJoCo's order (mj_step with the Euler integrator):

1. `kinematics`: link poses and joint axes from q (mj_kinematics; hinge rotation angle q - ref);
2. `link_inertias`: each link's spatial inertia at the origin (mj_comPos's cinert);
3. `velocities`: link velocities and the joints' motion-axis derivatives (mj_comVel's cvel, cdof_dot);
4. `bias_forces`: C(q, q') by recursive Newton-Euler with q'' = 0 and gravity as a base acceleration (mj_rne);
5. `joint_forces`: passive (spring, damper) and actuator forces (mj_passive, mj_fwdActuation);
6. `mass_matrix`: composite-rigid-body algorithm, plus armature, plus dt * damping on the diagonal: MuJoCo's Euler
   integrator treats joint damping implicitly, (M + dt D) q'' = tau (mj_Euler);
7. `solve`: dense Cholesky factorisation and two triangular solves; then q' += dt q'', q += dt q' (mj_advance).
"""

import taichi as ti

from ...engine import tmath


@ti.func
def cross_motion(w, v, sw, sv):
    """(w, v) x (sw, sv) for motions: the rate of change of the motion (sw, sv) carried by a frame moving at
    (w, v). Returns the angular and linear parts stacked as a 6-vector."""
    a = w.cross(sw)
    b = w.cross(sv) + v.cross(sw)
    return ti.Vector([a[0], a[1], a[2], b[0], b[1], b[2]])


@ti.func
def cross_force(w, v, n, f):
    """(w, v) x* (n, f) for a force (n, f) carried by a frame moving at (w, v): (w x n + v x f, w x f)."""
    a = w.cross(n) + v.cross(f)
    b = w.cross(f)
    return ti.Vector([a[0], a[1], a[2], b[0], b[1], b[2]])


@ti.func
def top(x):
    return ti.Vector([x[0], x[1], x[2]])


@ti.func
def bottom(x):
    return ti.Vector([x[3], x[4], x[5]])


@ti.func
def inertia_times(m, h, I, w, v):
    """The spatial inertia (m, h, I_O) applied to the motion (w, v): the momentum (n, f) as a 6-vector."""
    n = I @ w + h.cross(v)
    f = m * v - h.cross(w)
    return ti.Vector([n[0], n[1], n[2], f[0], f[1], f[2]])


@ti.data_oriented
class ArticulatedKernels:
    """The stages, as methods of the system (they read its baked topology `self.model` and its parameters)."""

    @ti.func
    def kinematics(
        self, q: ti.template(), R: ti.template(), p: ti.template(), Sw: ti.template(), Sv: ti.template()
    ):
        """Appends each link's world rotation R[i] and origin p[i] (m), and each joint's motion axis (Sw[j], Sv[j])
        (a hinge: (a, x_anchor x a); a slide: (0, a)), for the joint coordinates `q` (a list of locals)."""
        for i in ti.static(range(self.model.n_links)):
            parent = ti.static(self.model.links[i].parent)
            frames_R = []
            frames_p = []
            if ti.static(parent < 0):
                r0 = ti.Matrix(ti.static(self._link_rot[i]))
                p0 = ti.Vector(ti.static(self._link_pos[i]))
                ti.static(frames_R.append(r0))
                ti.static(frames_p.append(p0))
            else:
                r0 = R[parent] @ ti.Matrix(ti.static(self._link_rot[i]))
                p0 = p[parent] + R[parent] @ ti.Vector(ti.static(self._link_pos[i]))
                ti.static(frames_R.append(r0))
                ti.static(frames_p.append(p0))
            for k in ti.static(range(len(self.model.links[i].joints))):
                j = ti.static(self.model.links[i].joints[k])
                rc = frames_R[k]
                pc = frames_p[k]
                axis = rc @ ti.Vector(ti.static(self._joint_axis[j]))
                anchor = pc + rc @ ti.Vector(ti.static(self._joint_pos[j]))
                coord = q[j] - ti.static(self.model.joints[j].ref)
                if ti.static(self.model.joints[j].kind == "hinge"):
                    K = ti.Matrix(ti.static(self._joint_skew[j]))
                    local = (
                        ti.Matrix.identity(float, 3)
                        + tmath.sin(coord) * K
                        + (1.0 - tmath.cos(coord)) * (K @ K)
                    )
                    rn = rc @ local
                    pn = anchor - rn @ ti.Vector(ti.static(self._joint_pos[j]))
                    sv = anchor.cross(axis)
                    ti.static(frames_R.append(rn))
                    ti.static(frames_p.append(pn))
                    ti.static(Sw.append(axis))
                    ti.static(Sv.append(sv))
                else:
                    pn = pc + coord * axis
                    zero = ti.Vector.zero(float, 3)
                    ti.static(frames_R.append(rc))
                    ti.static(frames_p.append(pn))
                    ti.static(Sw.append(zero))
                    ti.static(Sv.append(axis))
            ti.static(R.append(frames_R[-1]))
            ti.static(p.append(frames_p[-1]))

    @ti.func
    def link_inertias(
        self, b, R: ti.template(), p: ti.template(), m: ti.template(), h: ti.template(), I: ti.template()
    ):
        """Appends each link's mass m (kg), first moment h = m c (kg m) and inertia about the origin I_O (kg m^2)."""
        for i in ti.static(range(self.model.n_links)):
            if ti.static(not self._moving[i]):  # welded to the world: never enters the dynamics
                mi = 0.0
                hi = ti.Vector.zero(float, 3)
                Ii = ti.Matrix.zero(float, 3, 3)
                ti.static(m.append(mi))
                ti.static(h.append(hi))
                ti.static(I.append(Ii))
            else:
                mi = self._mass[i].field[self._mass[i].bi(b)]
                principal = self._inertia[i].field[self._inertia[i].bi(b)]
                frame = R[i] @ ti.Matrix(ti.static(self._inertial_rot[i]))
                Ic = (
                    frame
                    @ ti.Matrix(
                        [[principal[0], 0.0, 0.0], [0.0, principal[1], 0.0], [0.0, 0.0, principal[2]]]
                    )
                    @ frame.transpose()
                )
                c = p[i] + R[i] @ ti.Vector(ti.static(self._inertial_pos[i]))
                hi = mi * c
                Ii = Ic + mi * (c.dot(c) * ti.Matrix.identity(float, 3) - c.outer_product(c))
                ti.static(m.append(mi))
                ti.static(h.append(hi))
                ti.static(I.append(Ii))

    @ti.func
    def velocities(
        self, qd: ti.template(), Sw: ti.template(), Sv: ti.template(), vel: ti.template(), dS: ti.template()
    ):
        """Appends each link's spatial velocity vel[i] (6-vector: rad/s, m/s) and each joint's axis rate dS[j]
        = vel_before_j x S_j (MuJoCo's cdof_dot, with the joints of the same link before j already moving)."""
        for i in ti.static(range(self.model.n_links)):
            parent = ti.static(self.model.links[i].parent)
            chain = []
            if ti.static(parent < 0):
                v0 = ti.Vector.zero(float, 6)
                ti.static(chain.append(v0))
            else:
                v0 = vel[parent]
                ti.static(chain.append(v0))
            for k in ti.static(range(len(self.model.links[i].joints))):
                j = ti.static(self.model.links[i].joints[k])
                vc = chain[k]
                dSj = cross_motion(top(vc), bottom(vc), Sw[j], Sv[j])
                vn = vc + qd[j] * ti.Vector([Sw[j][0], Sw[j][1], Sw[j][2], Sv[j][0], Sv[j][1], Sv[j][2]])
                ti.static(dS.append(dSj))
                ti.static(chain.append(vn))
            ti.static(vel.append(chain[-1]))

    @ti.func
    def bias_forces(
        self,
        b,
        qd: ti.template(),
        m: ti.template(),
        h: ti.template(),
        I: ti.template(),
        vel: ti.template(),
        dS: ti.template(),
        Sw: ti.template(),
        Sv: ti.template(),
        bias: ti.template(),
    ):
        """Appends the joint bias forces C(q, q') (N m or N): Coriolis, centrifugal and gravity, by recursive
        Newton-Euler with zero joint accelerations and the base accelerating at -g."""
        g = self.gravity.field[self.gravity.bi(b)]
        acc = []
        for i in ti.static(range(self.model.n_links)):
            parent = ti.static(self.model.links[i].parent)
            a = ti.Vector([0.0, 0.0, 0.0, -g[0], -g[1], -g[2]])
            if ti.static(parent >= 0):
                a = acc[parent]
            for k in ti.static(range(len(self.model.links[i].joints))):
                j = ti.static(self.model.links[i].joints[k])
                a += qd[j] * dS[j]
            ti.static(acc.append(a))
        force = {}
        for r in ti.static(range(self.model.n_links)):
            i = ti.static(self.model.n_links - 1 - r)
            w = top(vel[i])
            v = bottom(vel[i])
            mom = inertia_times(m[i], h[i], I[i], w, v)
            fi = inertia_times(m[i], h[i], I[i], top(acc[i]), bottom(acc[i]))
            total = fi + cross_force(w, v, top(mom), bottom(mom))
            for c in ti.static(self._children[i]):
                total += force[c]
            ti.static(force.update({i: total}))
        for j in ti.static(range(self.model.n_dofs)):
            Fj = force[ti.static(self.model.joints[j].link)]
            cj = Sw[j].dot(top(Fj)) + Sv[j].dot(bottom(Fj))
            ti.static(bias.append(cj))

    @ti.func
    def joint_forces(self, b, f, s: ti.template(), q: ti.template(), qd: ti.template(), tau: ti.template()):
        """Appends the passive and actuator force on each joint (N m or N): -stiffness (q - spring_ref) - damping q'
        plus gear * (gain ctrl + bias0 + bias1 gear q + bias2 gear q') of each actuator on it, with ctrl = act[f]
        clamped to its ctrlrange and the force to its forcerange (MuJoCo's mj_passive and mj_fwdActuation)."""
        for j in ti.static(range(self.model.n_dofs)):
            k = self._stiffness[j].field[self._stiffness[j].bi(b)]
            c = self._damping[j].field[self._damping[j].bi(b)]
            t = -k * (q[j] - ti.static(self.model.joints[j].spring_ref)) - c * qd[j]
            for a in ti.static(self._joint_actuators[j]):
                ctrl = 0.0
                if ti.static(self.has_controller):
                    ctrl = s.act[f, b, a]
                if ti.static(self._ctrl_limited[a]):
                    ctrl = ti.min(
                        ti.max(ctrl, ti.static(self.model.actuators[a].ctrlrange[0])),
                        ti.static(self.model.actuators[a].ctrlrange[1]),
                    )
                gain = self._gain[a].field[self._gain[a].bi(b)]
                bias = self._bias[a].field[self._bias[a].bi(b)]
                gear = ti.static(self.model.actuators[a].gear)
                force = gain * ctrl + bias[0] + bias[1] * gear * q[j] + bias[2] * gear * qd[j]
                if ti.static(self._force_limited[a]):
                    force = ti.min(
                        ti.max(force, ti.static(self.model.actuators[a].forcerange[0])),
                        ti.static(self.model.actuators[a].forcerange[1]),
                    )
                t += gear * force
            ti.static(tau.append(t))

    @ti.func
    def mass_matrix(
        self,
        b,
        m: ti.template(),
        h: ti.template(),
        I: ti.template(),
        Sw: ti.template(),
        Sv: ti.template(),
        M: ti.template(),
    ):
        """Fills M[(j, k)] for k an ancestor of j (or j), by the composite-rigid-body algorithm:
        M_jk = S_k . (I_subtree(link of j) S_j), plus the armature on the diagonal (kg m^2 or kg)."""
        cm = {}
        ch = {}
        cI = {}
        for r in ti.static(range(self.model.n_links)):
            i = ti.static(self.model.n_links - 1 - r)
            mi = m[i]
            hi = h[i]
            Ii = I[i]
            for c in ti.static(self._children[i]):
                mi += cm[c]
                hi += ch[c]
                Ii += cI[c]
            ti.static(cm.update({i: mi}))
            ti.static(ch.update({i: hi}))
            ti.static(cI.update({i: Ii}))
        for j in ti.static(range(self.model.n_dofs)):
            link = ti.static(self.model.joints[j].link)
            F = inertia_times(cm[link], ch[link], cI[link], Sw[j], Sv[j])
            for k in ti.static(self._ancestors[j]):
                Mjk = Sw[k].dot(top(F)) + Sv[k].dot(bottom(F))
                if ti.static(k == j):
                    Mjk += self._armature[j].field[self._armature[j].bi(b)]
                ti.static(M.update({(j, k): Mjk}))

    @ti.func
    def solve(self, H: ti.template(), rhs: ti.template(), x: ti.template()):
        """Appends the solution x of H x = rhs for the symmetric positive definite H given by its lower triangle
        H[(j, k)], k <= j (entries not given are zero): Cholesky H = L L^T, then L y = rhs, L^T x = y."""
        n = ti.static(self.model.n_dofs)
        L = {}
        for j in ti.static(range(n)):
            for i in ti.static(range(j, n)):
                acc = 0.0
                if ti.static((i, j) in H):
                    acc = H[(i, j)]
                for k in ti.static(range(j)):
                    if ti.static((i, k) in L and (j, k) in L):
                        acc -= L[(i, k)] * L[(j, k)]
                if ti.static(i == j):
                    Ljj = ti.sqrt(acc)
                    ti.static(L.update({(j, j): Ljj}))
                else:
                    Lij = acc / L[(j, j)]
                    ti.static(L.update({(i, j): Lij}))
        y = []
        for i in ti.static(range(n)):
            acc = rhs[i]
            for k in ti.static(range(i)):
                if ti.static((i, k) in L):
                    acc -= L[(i, k)] * y[k]
            yi = acc / L[(i, i)]
            ti.static(y.append(yi))
        xs = {}
        for r in ti.static(range(n)):
            i = ti.static(n - 1 - r)
            acc = y[i]
            for k in ti.static(range(i + 1, n)):
                if ti.static((k, i) in L):
                    acc -= L[(k, i)] * xs[k]
            xi = acc / L[(i, i)]
            ti.static(xs.update({i: xi}))
        for i in ti.static(range(n)):
            ti.static(x.append(xs[i]))

    @ti.func
    def energy_of(
        self, b, qd: ti.template(), m: ti.template(), h: ti.template(), M: ti.template(), q: ti.template()
    ):
        """Kinetic 1/2 q'^T M q' (armature included, as MuJoCo's) plus gravitational -sum m g.c plus joint springs'
        1/2 k (q - ref)^2 (J)."""
        g = self.gravity.field[self.gravity.bi(b)]
        e = 0.0
        for j in ti.static(range(self.model.n_dofs)):
            for k in ti.static(self._ancestors[j]):
                factor = ti.static(0.5 if k == j else 1.0)
                e += factor * M[(j, k)] * qd[j] * qd[k]
            stiffness = self._stiffness[j].field[self._stiffness[j].bi(b)]
            e += 0.5 * stiffness * (q[j] - ti.static(self.model.joints[j].spring_ref)) ** 2
        for i in ti.static(range(self.model.n_links)):
            e -= g.dot(h[i])
        return e

    @ti.func
    def advance(self, s: ti.template(), f: ti.template(), b):
        """One Euler step of copy b from frame f: write q, q' and the link origins at f + 1, the energy at f."""
        q = []
        qd = []
        for j in ti.static(range(self.model.n_dofs)):
            qj = s.q[f, b, j]
            qdj = s.qd[f, b, j]
            ti.static(q.append(qj))
            ti.static(qd.append(qdj))
        R = []
        p = []
        Sw = []
        Sv = []
        self.kinematics(q, R, p, Sw, Sv)
        m = []
        h = []
        I = []
        self.link_inertias(b, R, p, m, h, I)
        vel = []
        dS = []
        self.velocities(qd, Sw, Sv, vel, dS)
        bias = []
        self.bias_forces(b, qd, m, h, I, vel, dS, Sw, Sv, bias)
        tau = []
        self.joint_forces(b, f, s, q, qd, tau)
        M = {}
        self.mass_matrix(b, m, h, I, Sw, Sv, M)
        H = {}
        rhs = []
        for j in ti.static(range(self.model.n_dofs)):
            for k in ti.static(self._ancestors[j]):
                Hjk = M[(j, k)]
                if ti.static(k == j):
                    Hjk += ti.static(self.dt) * self._damping[j].field[self._damping[j].bi(b)]
                ti.static(H.update({(j, k): Hjk}))
            rj = tau[j] - bias[j]
            ti.static(rhs.append(rj))
        qacc = []
        self.solve(H, rhs, qacc)
        q_new = []
        for j in ti.static(range(self.model.n_dofs)):
            qd_next = qd[j] + ti.static(self.dt) * qacc[j]
            q_next = q[j] + ti.static(self.dt) * qd_next
            s.qd[f + 1, b, j] = qd_next
            s.q[f + 1, b, j] = q_next
            ti.static(q_new.append(q_next))
        s.energy[f, b] = self.energy_of(b, qd, m, h, M, q)
        self.write_positions(s, f + 1, b, q_new)

    @ti.func
    def write_positions(self, s: ti.template(), f, b, q: ti.template()):
        """The world position of every link's origin (m) at frame f, from the joint coordinates q."""
        R = []
        p = []
        Sw = []
        Sv = []
        self.kinematics(q, R, p, Sw, Sv)
        for i in ti.static(range(self.model.n_links)):
            s.x[f, b, i] = p[i]
