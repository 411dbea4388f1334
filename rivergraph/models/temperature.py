"""Stream temperature on the river graph: heat carried by the routed water, differentiable end to end.

Per reach i and step t (dt s), with the routed outflow Q_i(t), upstream inflow I_i(t) = sum_j Q_j(t) and
lateral inflow q_i(t) (m3/s), and W_i the reach water volume (m3) consistent with the router's continuity,
W_i(t) = W_i(t-1) + dt [I_i(t) + q_i(t) - Q_i(t)]:

1. implicit upwind mixing (fully mixed reach; backward Euler in time, upwind in space)

       D_i = W_i(t-1) + V_MIN + dt (I_i + q_i)          (= W_i(t) + V_MIN + dt Q_i, water present in the step)
       Tm_i = [(W_i(t-1) + V_MIN) T_i(t-1) + dt sum_j Q_j T_j(t) + dt q_i T_lat,i] / D_i

2. surface exchange H = K_e (T_e - T) (W m-2) over the surface A_s = width x length, integrated exactly
   over the step for the mixed water: T_i(t) = T_e + (Tm_i - T_e) e_i, e_i = exp(-K_e A_s dt / (rho c_p D_i)).
   For a reach with no storage (D = dt Q) this is the exact Lagrangian relaxation of a parcel over its
   travel time L/v; for a storage-dominated reach, the exact relaxation of the stored water over dt.

Together: T_i(t) = sum_j a_j T_j(t) + beta_i T_i(t-1) + gamma_i with non-negative weights summing to e_i <= 1,
so T(t) is a convex combination of upstream, previous, lateral and equilibrium temperatures: bounded by its
sources, no oscillation, stable for any dt. Heat (rho c_p (W + V_MIN) T) is conserved exactly: with the
exchange off the network heat content changes only by lateral inflow minus outlet outflow. The recursion
has the router's dependency structure and runs on its wavefront schedule with a hand-written adjoint
(the engine's :class:`~rivergraph.engine.cells.LinearHeat` cell). W comes from the router's Muskingum storage S (Todini 2007 conservative
form): W(t) = S(t) + dt/2 (I(t) - Q(t)) satisfies the implicit continuity above exactly; it is evaluated
from the final storage backwards in float64 (clamped at 0 against rounding).

Sources of the lateral inflow (PRMS-SNTemp, Sanders et al. 2017, USGS TM 6-D4; Markstrom 2012):
surface runoff at air temperature (>= 0 degC), subsurface and groundwater at recency-weighted (exponential)
averages of air temperature with residence times ``ss_tau_days`` and ``gw_tau_days``; fractions
``gw_frac`` and ``ss_frac`` (of the non-groundwater remainder).

Equilibrium temperature and exchange coefficient (``equilibrium="energy"``): the root T_e of a surface energy
balance H(T) chosen by name, ``surface_exchange`` (:mod:`rivergraph.physics.exchange`: ``chapra_edinger``, the
default, Chapra 1997 / Edinger, Duttweiler & Geyer 1968; ``prms_sntemp``, SNTEMP / PRMS-SNTemp, Theurer et al.
1984, Sanders et al. 2017; ``prms_sntemp_as_coded``), by bracketed Newton with an implicit-function gradient
(:func:`rivergraph.physics.heat.equilibrium_root`); K_e is the chord slope of H between the formulation's anchor
(air or inflow temperature) and T_e (exact flux at both), times the learnable ``ke_scale``.
``equilibrium="mohseni"``: T_e = mu + (alpha - mu)/(1 + exp(gamma (beta - Ta))) (Mohseni, Stefan &
Erickson 1998, WRR 34(10)) with K_e = ke_scale x 30 W m-2 degC-1.

Lateral-inflow shares and snowmelt from a hydrology model (PRMS-SNTemp's ``lat_inflow``): when the forcing
gives ``gw_share``/``ss_share`` ([T, N] fractions of the lateral inflow; the rest is surface runoff) they
replace the parameters ``gw_frac``/``ss_frac``; ``melt_share`` ([T, N], 0-1) is the share of the surface
and subsurface water that is snowmelt at ``MELT_TEMP`` (PRMS: melt / (melt + rain) on days with melt).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

import numpy as np
import pandas as pd
import torch

from ..engine.cells import linear_transport
from ..graph.network import NetworkError, RiverNetwork
from ..physics.exchange import air_pressure_hpa, exchange_equilibrium, friction_heat, get_exchange
from ..physics.heat import (KE_MOHSENI, V_MIN, clear_sky_shortwave, lateral_temperature, mohseni_equilibrium,
                            recency_average, relaxation_factor)
from ..physics.muskingum import water_volume_history
from .heat_budget import exchange_terms, heat_budget, inflow_temperature, mixed_temperature
from .params import OutputSpec, ParameterNet
from .router import MuskingumCunge

__all__ = ["StreamTemperature", "HeatForcing", "Hydraulics", "TemperatureResult", "TEMPERATURE_OUTPUTS",
           "DEFAULTS", "temperature_parameter_net", "joint_loss", "synthetic_texas_forcing"]

TEMPERATURE_OUTPUTS: dict[str, OutputSpec] = {
    # fraction of shortwave blocked by riparian shade (0 open, 1 closed canopy); PRMS-SNTemp seg shade 0-1
    "shade": OutputSpec(0.0, 1.0, "sigmoid"),
    # multiplier of the energy-balance exchange coefficient; K_e itself spans ~10-60 W m-2 degC-1
    # (Edinger et al. 1968; Caissie 2006, Freshwater Biol. 51), i.e. a factor ~2 either way of ~30
    "ke_scale": OutputSpec(0.5, 2.0, "log"),
    "gw_frac": OutputSpec(0.0, 1.0, "sigmoid"),  # groundwater share of lateral inflow (-)
    "ss_frac": OutputSpec(0.0, 1.0, "sigmoid"),  # subsurface share of the non-groundwater remainder (-)
    "ss_tau_days": OutputSpec(1.0, 365.0, "log"),  # PRMS-SNTemp ss_tau: 1-365 d, default 30
    "gw_tau_days": OutputSpec(1.0, 365.0, "log"),  # PRMS-SNTemp gw_tau: 1-365 d, default 365
    "gw_offset": OutputSpec(-5.0, 5.0, "sigmoid"),  # degC added to groundwater temperature
}
"""Learnable temperature parameters with their hard bounds (use with :class:`rivergraph.models.ParameterNet`)."""

DEFAULTS = {"shade": 0.2, "ke_scale": 1.0, "gw_frac": 0.2, "ss_frac": 0.3, "ss_tau_days": 30.0,
            "gw_tau_days": 365.0, "gw_offset": 0.0}
"""Default parameter values (PRMS-SNTemp defaults for the residence times)."""


@dataclass
class HeatForcing:
    """Meteorological forcing per step and reach, each [T, N] in network order (or broadcastable):
    air temperature (degC), incoming shortwave (W m-2), relative humidity (0-1), wind speed (m/s).
    Only ``air_temp`` is needed for ``equilibrium='mohseni'``. Optional: cloud cover (0-1, longwave),
    lateral-inflow shares ``gw_share``/``ss_share`` and ``melt_share`` (module docstring). For
    ``surface_exchange='prms_sntemp'`` (:mod:`rivergraph.physics.exchange`): ``pet`` (potential evaporation,
    mm/day), ``sky_shade`` (0-1, sky hidden by topography and vegetation, PRMS ``seg_shade``; the shortwave
    given is taken as already shaded by it) and ``veg_shade`` (0-1, riparian vegetation shade index, PRMS
    ``seg_svi``); wind is not used there."""

    air_temp: torch.Tensor
    shortwave: torch.Tensor | None = None
    rel_humidity: torch.Tensor | float = 0.6
    wind: torch.Tensor | float = 2.0
    cloud_cover: torch.Tensor | float = 0.0
    gw_share: torch.Tensor | None = None
    ss_share: torch.Tensor | None = None
    melt_share: torch.Tensor | None = None
    pet: torch.Tensor | None = None
    sky_shade: torch.Tensor | None = None
    veg_shade: torch.Tensor | None = None


@dataclass
class Hydraulics:
    """Routed water per step in the schedule's sorted reach order: outflow Q, upstream inflow I and
    lateral inflow q [T, N] (m3/s), volume W [T + 1, N] (m3, W[0] before the first step), surface width
    [T, N] (m). Computed once by :meth:`StreamTemperature.route` and reusable while routing is fixed."""

    Q: torch.Tensor
    I: torch.Tensor
    q: torch.Tensor
    W: torch.Tensor
    width: torch.Tensor


@dataclass
class TemperatureResult:
    """Water temperature [T, N] (degC, network order) and, in network order, the terms behind it."""

    temperature: torch.Tensor
    discharge: torch.Tensor
    equilibrium: torch.Tensor
    lateral_temp: torch.Tensor
    budget: dict = field(default_factory=dict)


class StreamTemperature(torch.nn.Module):
    """Muskingum-Cunge routing plus heat transport on a :class:`RiverNetwork`.

    Args:
        network: the river network (needs ``length_m``; ``lat``/``lon`` only for clear-sky shortwave).
        dt: step (s), for both routing and heat; q_lat and forcing have one row per step.
        mode: routing mode of :class:`rivergraph.models.router.MuskingumCunge`.
        equilibrium: ``"energy"`` (root of the surface energy balance) or ``"mohseni"``.
        albedo: water albedo (-).
        exchange: surface heat exchange on (default); ``False`` leaves pure advection and mixing (a
            conservative tracer), for checks.
        surface_exchange: the energy-balance formulation of ``equilibrium="energy"``, a name of
            :data:`rivergraph.physics.exchange.EXCHANGES`: ``"chapra_edinger"`` (default) or ``"prms_sntemp"``
            (needs the network columns ``slope`` and ``elevation_m`` and the forcing ``pet``, ``sky_shade``,
            ``veg_shade``). A formulation whose terms depend on the inflow water temperature (PRMS's t_o) is
            solved as a fixed point in T_ref = the flow-weighted temperature of the step's upstream and lateral
            inflow (:func:`~rivergraph.models.heat_budget.inflow_temperature`), one sweep per iteration from the
            conservative tracer, until T changes by less than ``reference_tol`` degC (exact after as many
            sweeps as the network is deep, usually far fewer); more than ``reference_max_iter`` raises.
            ``self.report`` records the iterations and the last change; gradients follow the unrolled sweeps.
    Call ``model(q_lat, forcing, routing_params=..., **temperature_params)`` -> :class:`TemperatureResult`;
    temperature parameters are scalars or [N] tensors named as in :data:`TEMPERATURE_OUTPUTS`.
    """

    def __init__(self, network: RiverNetwork, dt: float = 3600.0, mode: str = "trapezoid",
                 equilibrium: Literal["energy", "mohseni"] = "energy", albedo: float = 0.1,
                 exchange: bool = True, device: str | torch.device = "cpu",
                 surface_exchange: str = "chapra_edinger", reference_tol: float = 1e-3,
                 reference_max_iter: int = 30):
        super().__init__()
        get_exchange(surface_exchange)  # unknown names raise, listing the registered ones
        self.surface_exchange, self.reference_tol = surface_exchange, float(reference_tol)
        self.reference_max_iter = int(reference_max_iter)
        if equilibrium not in ("energy", "mohseni"):
            raise ValueError(f"equilibrium must be 'energy' or 'mohseni', got '{equilibrium}'")
        if "length_m" not in network.attrs:
            raise NetworkError("stream temperature needs the network column 'length_m'")
        self.network, self.dt, self.equilibrium, self.albedo = network, float(dt), equilibrium, albedo
        self.exchange = exchange
        self.router = MuskingumCunge(network, dt=dt, mode=mode, output="end", device=device)
        self.sched = self.router.sched

    # ------------------------------------------------------------------ helpers
    def _sorted(self, x, name: str, T: int, dtype) -> torch.Tensor:
        """[T, N] (or broadcastable) network-order tensor -> [T, N] sorted, with checks naming reaches."""
        N = self.sched.n
        x = torch.as_tensor(x, dtype=dtype, device=self.sched.device) if not torch.is_tensor(x) else \
            x.to(device=self.sched.device, dtype=dtype)
        try:
            x = x.expand(T, N)
        except RuntimeError:
            raise ValueError(f"'{name}' has shape {tuple(x.shape)}, expected [T, N] = [{T}, {N}] "
                             "(time x reach, network order) or broadcastable") from None
        bad = ~torch.isfinite(x.detach())
        if bad.any():
            cols = bad.any(0).nonzero().flatten()[:10].cpu().numpy()
            raise ValueError(f"'{name}' has NaN/inf values at reaches {self.network.ids[cols].tolist()}")
        return x.index_select(1, self.sched.order)

    def _param(self, name: str, value, dtype) -> torch.Tensor:
        spec = TEMPERATURE_OUTPUTS[name]
        v = DEFAULTS[name] if value is None else value
        v = self.network.reach_vector(v, dtype, self.sched.device, f"temperature parameter '{name}'")
        vd = v.detach()
        bad = ~torch.isfinite(vd) | (vd < spec.lo) | (vd > spec.hi)
        if bad.any():
            raise ValueError(f"temperature parameter '{name}' outside its bounds [{spec.lo}, {spec.hi}] at reaches "
                             f"{self.network.ids[bad.nonzero().flatten()[:10].cpu().numpy()].tolist()}")
        return v.index_select(0, self.sched.order)

    # ------------------------------------------------------------------ routing
    def route(self, q_lat: torch.Tensor, routing_params: Mapping | None = None, **route_kw) -> Hydraulics:
        """Route q_lat [T, N] (m3/s, network order) and derive volumes and widths (sorted order)."""
        routing_params = dict(routing_params or {})
        router, sched = self.router, self.sched
        Q = router(q_lat, balance=False, **route_kw, **routing_params)
        dtype = Q.dtype
        order = sched.order
        Qs = Q.index_select(1, order)
        qs = torch.as_tensor(q_lat, device=sched.device).to(dtype).index_select(1, order)
        Is = sched.upstream_sum(Qs)
        th = router.sorted_parameters(routing_params, dtype)  # sorted order, validated
        S_end = router.state.S.to(dtype).index_select(0, order)  # Muskingum storage at the end (every mode)
        W = water_volume_history(Qs, Is, qs, S_end, self.dt)
        width = router.channel.top_width(Qs, *(th[k] for k in router.channel.param_names))
        if width is None:  # a geometry without a width (static K, X): the network's column
            if "top_width_m" not in self.network.attrs:
                raise NetworkError(f"routing mode '{router.mode}': stream temperature needs the column 'top_width_m'")
            width = torch.as_tensor(self.network.attrs["top_width_m"].to_numpy(np.float64).copy(), dtype=dtype,
                                    device=sched.device).index_select(0, order).expand_as(Qs)
        return Hydraulics(Qs, Is, qs, W, width)

    def hydraulics_from_flows(self, Q, q_lat, width, volume_end=None) -> Hydraulics:
        """:class:`Hydraulics` from flows routed elsewhere (e.g. a PRMS run): outflow Q and lateral inflow
        q_lat [T, N] (m3/s, network order, >= 0), surface width [T, N] (m) and the reach volume after the last
        step ([N] m3, default 0). Upstream inflow is the sum of the upstream outflows; the volume history
        follows from continuity backwards (as :meth:`route`), clamped at 0: ``self.report['volume_clamped_m3']``
        records the largest clamp, the water the given flows do not account for."""
        sched = self.sched
        dtype = torch.as_tensor(Q).dtype if torch.is_tensor(Q) else torch.float64
        T = torch.as_tensor(Q).shape[0]
        Qs, qs = self._sorted(Q, "Q", T, dtype), self._sorted(q_lat, "q_lat", T, dtype)
        ws = self._sorted(width, "width", T, dtype)
        for name, v in (("Q", Qs), ("q_lat", qs), ("width", ws)):
            if (v.detach() < 0).any():
                raise ValueError(f"'{name}' is negative at reaches "
                                 f"{self.network.ids[sched.order[(v < 0).any(0)][:10].cpu().numpy()].tolist()}")
        Is = sched.upstream_sum(Qs)
        w_end = Qs.new_zeros(Qs.shape[1]) if volume_end is None else self._sorted(volume_end, "volume_end", 1, dtype)[0]
        W = water_volume_history(Qs, Is, qs, w_end - 0.5 * self.dt * (Is[-1] - Qs[-1]), self.dt)
        created = (W[1:] - W[:-1] - self.dt * (Is + qs - Qs)).abs().max()
        self.report = {"volume_clamped_m3": float(created)}
        return Hydraulics(Qs, Is, qs, W, ws)


    # ------------------------------------------------------------------ heat
    def temperature(self, hyd: Hydraulics, forcing: HeatForcing, time: pd.DatetimeIndex | None = None,
                    T0: torch.Tensor | None = None, memory_init: torch.Tensor | None = None,
                    budget: bool = False, **params) -> TemperatureResult:
        """Water temperature for routed water ``hyd`` and ``forcing``; see the module docstring.

        T0 ([N] degC, network order): temperature before the first step (default: the first step's lateral
        inflow temperature). memory_init ([N] degC): subsurface/groundwater memory before the first step
        (default: the forcing-period mean air temperature of each reach). ``time`` is needed only when
        ``forcing.shortwave`` is None (clear-sky shortwave). ``budget=True`` adds the heat budget terms.
        """
        unknown = set(params) - set(TEMPERATURE_OUTPUTS)
        if unknown:
            raise TypeError(f"unknown temperature parameter(s) {sorted(unknown)}; "
                            f"expected {sorted(TEMPERATURE_OUTPUTS)}")
        sched, dt = self.sched, self.dt
        T, N = hyd.Q.shape
        dtype = hyd.Q.dtype
        p = {k: self._param(k, params.get(k), dtype) for k in TEMPERATURE_OUTPUTS}
        ta = self._met(forcing.air_temp, "air_temp", T, dtype, -60.0, 60.0, " (kelvin given?)")
        # sources of the lateral inflow
        m0 = ta.mean(0) if memory_init is None else self._sorted(memory_init, "memory_init", 1, dtype)[0]
        t_ss = recency_average(ta, p["ss_tau_days"] * 86400.0, dt, m0)
        t_gw = recency_average(ta, p["gw_tau_days"] * 86400.0, dt, m0) + p["gw_offset"]
        shares = {name: None if getattr(forcing, name) is None else
                  self._met(getattr(forcing, name), name, T, dtype, 0.0, 1.0)
                  for name in ("gw_share", "ss_share", "melt_share")}
        if shares["gw_share"] is not None or shares["ss_share"] is not None:
            gw = shares["gw_share"] if shares["gw_share"] is not None else torch.zeros_like(ta)
            ss = shares["ss_share"] if shares["ss_share"] is not None else torch.zeros_like(ta)
            if (gw.detach() + ss.detach() > 1.0 + 1e-6).any():
                raise ValueError("forcing gw_share + ss_share exceeds 1 at reaches "
                                 f"{self.network.ids[sched.order[(gw + ss > 1.0 + 1e-6).any(0)][:10].cpu().numpy()].tolist()}")
            # lateral_temperature takes ss as a share of the non-groundwater remainder
            ss_rest = torch.where(gw < 1.0, ss / (1.0 - gw).clamp_min(1e-12), torch.zeros_like(ss)).clamp(0.0, 1.0)
            t_lat = lateral_temperature(ta, t_ss, t_gw, ss_rest, gw, shares["melt_share"])
        else:
            t_lat = lateral_temperature(ta, t_ss, t_gw, p["ss_frac"], p["gw_frac"], shares["melt_share"])
        x0 = t_lat[0] if T0 is None else self._sorted(T0, "T0", 1, dtype)[0]
        # coefficients of T(t) = sum_j a_j T_j(t) + beta T(t-1) + gamma (module docstring)
        W_prev = hyd.W[:-1] + V_MIN
        D = W_prev + dt * (hyd.I + hyd.q)
        length = self._column("length_m", dtype)
        area = hyd.width * length

        def sweep(t_e, k_e):
            e = relaxation_factor(k_e * p["ke_scale"], area * area_factor, dt, D) if self.exchange else torch.ones_like(D)
            coef = e * dt / D
            coef_down = torch.cat([coef, coef.new_zeros(T, 1)], 1).index_select(1, sched.down)  # 0 for outlets
            gamma = coef * hyd.q * t_lat + (1.0 - e) * t_e
            return linear_transport(sched, coef_down * hyd.Q, e * W_prev / D, gamma, x0), e

        form, inputs, area_factor = None, None, 1.0
        if self.equilibrium == "mohseni":
            t_e = mohseni_equilibrium(ta).clamp_min(0.0)
            temp, e = sweep(t_e, torch.full_like(ta, KE_MOHSENI))
        else:
            form = get_exchange(self.surface_exchange)
            area_factor = form.area_factor
            inputs = self._exchange_inputs(form, forcing, hyd, ta, t_gw, p["shade"], time, T, dtype)
            if not form.reference_dependent:
                t_e, k_e = exchange_equilibrium(form, inputs, self.albedo)
                t_e = t_e.clamp_min(0.0)  # no ice process: liquid water does not equilibrate below freezing
                temp, e = sweep(t_e, k_e)
            else:  # terms at the inflow temperature: fixed point in T_ref = the step's inflow temperature
                temp, e = sweep(torch.zeros_like(ta), torch.zeros_like(ta))  # conservative tracer to start
                for it in range(self.reference_max_iter):
                    inputs["t_ref"] = inflow_temperature(hyd, temp, t_lat, dt, sched)
                    t_e, k_e = exchange_equilibrium(form, inputs, self.albedo)
                    t_e = t_e.clamp_min(0.0)
                    new, e = sweep(t_e, k_e)
                    gap = float((new - temp).detach().abs().max())
                    temp = new
                    if gap < self.reference_tol:
                        break
                else:
                    raise RuntimeError(f"surface exchange '{form.name}': the inflow temperature did not converge in "
                                       f"{self.reference_max_iter} sweeps (last change {gap:.3g} degC)")
                self.report = {**getattr(self, "report", {}), "reference_iterations": it + 1,
                               "reference_gap_degC": gap}
        inv = sched.sorted_pos
        out = TemperatureResult(temp.index_select(1, inv), hyd.Q.index_select(1, inv), t_e.index_select(1, inv),
                                t_lat.index_select(1, inv))
        if budget:
            out.budget = {k: v.index_select(1, inv) for k, v in
                          heat_budget(hyd, temp, x0, t_lat, e, D, t_e, dt, sched).items()}
            if form is not None:
                t_mix = mixed_temperature(hyd, temp.detach(), x0.detach(), t_lat.detach(), D, dt, sched)
                out.budget.update({k: v.index_select(1, inv) for k, v in exchange_terms(
                    out.budget["exchange_J"].index_select(1, sched.order), t_mix, t_e.detach(), e.detach(), form,
                    inputs, self.albedo, area * area_factor, dt).items()})
        return out

    def _met(self, x, name: str, T: int, dtype, lo: float, hi: float, hint: str = "") -> torch.Tensor:
        """A forcing field [T, N] sorted, checked to lie in [lo, hi] (naming the reaches)."""
        v = self._sorted(x, name, T, dtype)
        bad = (v.detach() < lo) | (v.detach() > hi)
        if bad.any():
            raise ValueError(f"forcing '{name}' outside [{lo:g}, {hi:g}]{hint} at reaches "
                             f"{self.network.ids[self.sched.order[bad.any(0)][:10].cpu().numpy()].tolist()}")
        return v

    def _column(self, name: str, dtype) -> torch.Tensor:
        """Network column ``name`` as an [N] tensor in sorted order."""
        if name not in self.network.attrs:
            raise NetworkError(f"stream temperature needs the network column '{name}'")
        return torch.as_tensor(self.network.attrs[name].to_numpy(np.float64).copy(), dtype=dtype,
                               device=self.sched.device).index_select(0, self.sched.order)

    def _exchange_inputs(self, form, forcing: HeatForcing, hyd: Hydraulics, ta, t_gw, shade, time, T, dtype) -> dict:
        """The inputs ``form`` needs (sorted order), each from the forcing, the hydraulics or the network; a
        missing forcing field raises naming it."""
        def need(name, what):
            v = getattr(forcing, name)
            if v is None:
                raise ValueError(f"surface exchange '{form.name}' needs forcing.{name} ({what})")
            return v

        def shortwave():
            sw = forcing.shortwave
            if sw is None:
                if time is None or not {"lat", "lon"} <= set(self.network.attrs):
                    raise ValueError("forcing.shortwave is missing: give it, or give `time` and a network with "
                                     "lat/lon columns for clear-sky shortwave")
                sw = clear_sky_shortwave(time, self.network.attrs["lat"], self.network.attrs["lon"])
            return self._met(sw, "shortwave", T, dtype, 0.0, 2000.0)

        build = {
            "air_temp": lambda: ta, "shade": lambda: shade, "shortwave": shortwave, "t_ground": lambda: t_gw,
            "rel_humidity": lambda: self._met(forcing.rel_humidity, "rel_humidity", T, dtype, 0.01, 1.0),
            "wind": lambda: self._met(forcing.wind, "wind", T, dtype, 0.0, 60.0),
            "cloud_cover": lambda: self._met(forcing.cloud_cover, "cloud_cover", T, dtype, 0.0, 1.0),
            "sky_shade": lambda: self._met(need("sky_shade", "0-1, sky fraction hidden by topography and "
                                                "vegetation"), "sky_shade", T, dtype, 0.0, 1.0),
            "veg_shade": lambda: self._met(need("veg_shade", "0-1, riparian vegetation shade index"), "veg_shade",
                                           T, dtype, 0.0, 1.0),
            "pet_m_s": lambda: self._met(need("pet", "potential evaporation, mm/day"), "pet", T, dtype, 0.0,
                                         100.0) / (1000.0 * 86400.0),
            "pressure_hpa": lambda: air_pressure_hpa(self._column("elevation_m", dtype)),
            "friction": lambda: friction_heat(hyd.I + hyd.q, hyd.width.clamp_min(1e-3), self._column("slope", dtype)),
        }
        return {k: build[k]() for k in form.inputs if k != "t_ref"}

    def forward(self, q_lat, forcing: HeatForcing, time=None, routing_params: Mapping | None = None,
                T0=None, budget: bool = False, **params) -> TemperatureResult:
        """Route ``q_lat`` [T, N] (m3/s) and compute water temperature (see :meth:`temperature`)."""
        return self.temperature(self.route(q_lat, routing_params), forcing, time=time, T0=T0, budget=budget,
                                **params)


# -------------------------------------------------------------------------------- learning helpers
def temperature_parameter_net(outputs=("shade", "ke_scale", "gw_frac"), **kw) -> ParameterNet:
    """A :class:`ParameterNet` whose outputs are temperature parameters with their published bounds
    (:data:`TEMPERATURE_OUTPUTS`); other keyword arguments go to ParameterNet. Add routing outputs such as
    ``rivergraph.models.ROUTING_OUTPUTS['n']`` by passing a mapping instead of names."""
    if isinstance(outputs, Mapping):
        specs = dict(outputs)
    else:
        unknown = set(outputs) - set(TEMPERATURE_OUTPUTS)
        if unknown:
            raise ValueError(f"unknown temperature output(s) {sorted(unknown)}; "
                             f"choose from {sorted(TEMPERATURE_OUTPUTS)}")
        specs = {k: TEMPERATURE_OUTPUTS[k] for k in outputs}
    return ParameterNet(specs, **kw)


def joint_loss(q_sim, q_obs, t_sim, t_obs, w_discharge: float = 1.0, w_temperature: float = 1.0):
    """Weighted joint loss: w_q (1 - mean NSE of discharge) + w_T RMSE of temperature (degC); NaN
    observations are masked (see :mod:`rivergraph.metrics`). Either pair may be None."""
    from ..metrics import nse

    loss = 0.0
    if q_sim is not None and w_discharge:
        loss = loss + w_discharge * (1.0 - nse(q_sim, q_obs).nanmean())
    if t_sim is not None and w_temperature:
        t_obs = torch.as_tensor(t_obs, dtype=t_sim.dtype, device=t_sim.device)
        m = ~torch.isnan(t_obs)
        if not m.any():
            raise ValueError("no valid temperature observations")
        diff = torch.where(m, t_sim - torch.nan_to_num(t_obs), torch.zeros_like(t_sim))
        loss = loss + w_temperature * torch.sqrt((diff * diff).sum() / m.sum())
    return loss


# ---------------------------------------------------------------------------------- synthetic forcing
def synthetic_texas_forcing(net: RiverNetwork, time: pd.DatetimeIndex, seed: int = 0) -> HeatForcing:
    """Synthetic, documented summer forcing for central Texas (there is no air temperature in the shipped
    Lower Colorado data): air temperature = 29.5 degC daily mean (Austin, August normals: mean high ~36,
    low ~24 degC, NOAA 1991-2020) - 6.5 degC/km x (elevation - 200 m) + 6 degC diurnal half-range peaking at
    15:00 local solar time + 1.5 degC synoptic wave of 5-day period; relative humidity 0.55 daily mean
    (+-0.15, lowest in the afternoon); wind 3 m/s; clear-sky shortwave at each reach (FAO-56)."""
    for c in ("lat", "lon", "elevation_m"):
        if c not in net.attrs:
            raise NetworkError(f"synthetic forcing needs the network column '{c}'")
    time = pd.DatetimeIndex(time)
    tu = time.tz_convert("UTC").tz_localize(None) if time.tz is not None else time
    hours = ((tu - tu[0]).total_seconds().to_numpy() / 3600.0)[:, None]
    utc_h = (tu.hour + tu.minute / 60.0).to_numpy()[:, None]
    lon = net.attrs["lon"].to_numpy(np.float64)[None, :]
    elev = net.attrs["elevation_m"].to_numpy(np.float64)[None, :]
    solar_h = utc_h + lon / 15.0
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi)
    diurnal = np.cos(2 * np.pi * (solar_h - 15.0) / 24.0)
    air = 29.5 - 6.5e-3 * (elev - 200.0) + 6.0 * diurnal + 1.5 * np.sin(2 * np.pi * hours / 120.0 + phase)
    rh = 0.55 - 0.15 * diurnal
    sw = clear_sky_shortwave(time, net.attrs["lat"], lon[0])
    return HeatForcing(torch.from_numpy(air), sw, torch.from_numpy(rh), 3.0)

