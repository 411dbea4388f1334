"""Heat-budget terms of :class:`rivergraph.models.temperature.StreamTemperature` (J per step and reach, sorted
order): the exact transport budget and its split into the surface-exchange formulation's flux terms."""
from __future__ import annotations

import torch

from ..physics.heat import CP_W, RHO_W, V_MIN

__all__ = ["heat_budget", "mixed_temperature", "inflow_temperature", "exchange_terms"]


def mixed_temperature(hyd, temp, x0, t_lat, D, dt, sched) -> torch.Tensor:
    """Tm [T, N] (degC, sorted): the mixed temperature of step 1 of the scheme (before the surface exchange):
    [(W(t-1) + V_MIN) T(t-1) + dt sum_j Q_j T_j(t) + dt q T_lat] / D."""
    prev = torch.cat([x0.unsqueeze(0), temp[:-1]], 0)
    up = sched.upstream_sum(hyd.Q * temp)
    return ((hyd.W[:-1] + V_MIN) * prev + dt * up + dt * hyd.q * t_lat) / D


def inflow_temperature(hyd, temp, t_lat, dt, sched) -> torch.Tensor:
    """T_in [T, N] (degC, sorted): the flow-weighted temperature of the water entering the reach in the step,
    (sum_j Q_j T_j + q T_lat + eps T_lat) / (I + q + eps), eps = V_MIN/dt (the film renewed each step), so a
    reach without inflow gets its lateral-source temperature. PRMS-SNTemp's t_o (``stream_temp.f90``: the
    upstream and lateral mix the energy balance is evaluated at); unlike Tm it excludes the reach's own stored
    water, so it depends only on upstream temperatures of the same step (no feedback through storage)."""
    eps = V_MIN / dt
    return (sched.upstream_sum(hyd.Q * temp) + (hyd.q + eps) * t_lat) / (hyd.I + hyd.q + eps)


def heat_budget(hyd, temp, x0, t_lat, e, D, t_e, dt, sched) -> dict:
    """Per step and reach heat terms (J, sorted order): storage change, upstream advection in, lateral in,
    outflow, surface exchange; storage_change = advection_in + lateral_in - outflow + exchange exactly."""
    rc = RHO_W * CP_W
    with torch.no_grad():
        prev = torch.cat([x0.unsqueeze(0), temp[:-1]], 0)
        up = sched.upstream_sum(hyd.Q * temp)
        heat = rc * (hyd.W + V_MIN)
        t_mix = mixed_temperature(hyd, temp, x0, t_lat, D, dt, sched)
        return {"storage_change_J": heat[1:] * temp - heat[:-1] * prev, "advection_in_J": rc * dt * up,
                "lateral_in_J": rc * dt * hyd.q * t_lat, "outflow_J": rc * dt * hyd.Q * temp,
                "exchange_J": rc * D * (1.0 - e) * (t_e - t_mix)}


def exchange_terms(exchange_J, t_mix, t_e, e, form, inputs: dict, albedo: float, area, dt) -> dict:
    """The surface exchange of the step split into the formulation's flux terms (J, sorted order): each term of
    ``form.terms`` at the step-mean water temperature of the exponential relaxation from Tm towards T_e,
    T_e + (Tm - T_e)(1 - e)/(-ln e), times area and dt, plus the linearisation residual (exchange - sum of
    terms; what the linear law K_e (T_e - T) adds to the nonlinear H), so the split closes exactly."""
    with torch.no_grad():
        lam = -torch.log(e)
        frac = torch.where(lam > 1e-12, -torch.expm1(-lam) / lam.clamp_min(1e-12), torch.ones_like(lam))
        t_mean = t_e + (t_mix - t_e) * frac
        det = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in inputs.items()}
        terms = form.terms(t_mean, albedo=albedo, **det)
        out = {f"{k}_J": v * area * dt for k, v in terms.items()}
        out["linearisation_residual_J"] = exchange_J - sum(out.values())
    return out
