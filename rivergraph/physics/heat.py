"""Heat-exchange physics of stream temperature (pure functions, SI units unless named).

See :mod:`rivergraph.models.temperature` for the scheme and sources.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

RHO_W = 1000.0  # kg m-3
CP_W = 4184.0  # J kg-1 degC-1
SIGMA = 5.670374419e-8  # W m-2 K-4, Stefan-Boltzmann
KELVIN = 273.15
HPA_TO_MMHG = 0.750062
V_MIN = 1.0  # m3: a film of water kept in every reach so a dry reach has a defined temperature
EPS_WATER = 0.97  # emissivity of water
KE_MOHSENI = 30.0  # W m-2 degC-1: base exchange coefficient for the Mohseni mode (Caissie 2006: ~10-60)


# ----------------------------------------------------------------------------------------- physics
def saturation_vapor_pressure(t_c: torch.Tensor) -> torch.Tensor:
    """Saturation vapour pressure over water (hPa) at t_c (degC) (Tetens 1930, Murray 1967 coefficients)."""
    return 6.1078 * torch.exp(17.27 * t_c / (t_c + 237.3))


def clear_sky_shortwave(time: pd.DatetimeIndex, lat_deg, lon_deg, transmissivity: float = 0.75) -> torch.Tensor:
    """Clear-sky shortwave at the surface (W m-2), [T, N], for UTC times and reach lat/lon (deg).

    Extraterrestrial radiation 1361 dr cos(zenith) (FAO-56, Allen et al. 1998, eqs. 21-25; solar time = UTC +
    lon/15 h, equation of time neglected) times a clear-sky transmissivity 0.75 (FAO-56 eq. 37, sea level).
    """
    time = pd.DatetimeIndex(time)
    if time.tz is not None:
        time = time.tz_convert("UTC").tz_localize(None)
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))[None, :]
    lon = np.asarray(lon_deg, dtype=np.float64)[None, :]
    doy = time.day_of_year.to_numpy()[:, None]
    hours = (time.hour + time.minute / 60.0).to_numpy()[:, None]
    decl = 0.409 * np.sin(2 * np.pi * doy / 365.0 - 1.39)
    dr = 1.0 + 0.033 * np.cos(2 * np.pi * doy / 365.0)
    omega = np.pi / 12.0 * (hours + lon / 15.0 - 12.0)
    cosz = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(omega)
    return torch.from_numpy(transmissivity * 1361.0 * dr * np.clip(cosz, 0.0, None))


def energy_balance_equilibrium(air_temp, shortwave, rel_humidity, wind, shade, albedo: float = 0.1):
    """Linearised surface energy balance: returns (T_e degC, K_e W m-2 degC-1).

    Args: air temperature (degC), incoming shortwave (W m-2), relative humidity (0-1), wind (m/s), shade
    (0-1), water albedo (PRMS-SNTemp default 0.1). See the module docstring for the terms and sources.
    """
    ta_k = air_temp + KELVIN
    es = saturation_vapor_pressure(air_temp)
    ea = rel_humidity * es
    f_u = 9.2 + 0.46 * wind * wind  # W m-2 mmHg-1
    eps_a = 1.24 * (ea / ta_k).pow(1.0 / 7.0)
    h_at_ta = ((1.0 - albedo) * (1.0 - shade) * shortwave + (eps_a - EPS_WATER) * SIGMA * ta_k.pow(4)
               - f_u * HPA_TO_MMHG * (es - ea))
    des_dt = es * 17.27 * 237.3 / (air_temp + 237.3).pow(2)
    k_e = 4.0 * EPS_WATER * SIGMA * ta_k.pow(3) + f_u * HPA_TO_MMHG * des_dt + 0.47 * f_u
    return air_temp + h_at_ta / k_e, k_e


def mohseni_equilibrium(air_temp, alpha: float = 30.0, beta: float = 13.3, gamma: float = 0.18, mu: float = 0.0):
    """Mohseni et al. (1998) logistic stream temperature (degC) of air temperature (degC).

    alpha: upper bound, beta: inflection air temperature, gamma: steepness (1/degC), mu: lower bound;
    defaults near the median of the fitted US stations (beta ~ 13, gamma ~ 0.18, mu ~ 0); alpha 30 degC
    suits the warm southern US (fitted values range ~20-32 degC).
    """
    return mu + (alpha - mu) / (1.0 + torch.exp(gamma * (beta - air_temp)))


def recency_average(x: torch.Tensor, tau_s: torch.Tensor, dt: float, init: torch.Tensor) -> torch.Tensor:
    """Exponentially weighted running mean of x [T, N] with time constant tau_s (s, [N]); m(-1) = init.

    m(t) = m(t-1) + (1 - exp(-dt/tau)) (x(t) - m(t-1)): the PRMS-SNTemp moving-average memory of
    subsurface and groundwater temperature as an exact exponential filter.
    """
    w = -torch.expm1(-dt / tau_s)
    m, out = init, []
    for t in range(x.shape[0]):
        m = m + w * (x[t] - m)
        out.append(m)
    return torch.stack(out)


def lateral_temperature(air_temp, t_ss, t_gw, ss_frac, gw_frac):
    """Temperature (degC) of lateral inflow: groundwater share gw_frac at t_gw, subsurface share
    (1 - gw_frac) ss_frac at t_ss, the rest surface runoff at the air temperature; liquid water, so each
    source is floored at 0 degC (as PRMS-SNTemp floors water temperature)."""
    t_sur = air_temp.clamp_min(0.0)
    return gw_frac * t_gw.clamp_min(0.0) + (1.0 - gw_frac) * (ss_frac * t_ss.clamp_min(0.0) + (1.0 - ss_frac) * t_sur)


def relaxation_factor(k_e, area_m2, dt: float, volume_m3):
    """e = exp(-K_e A dt / (rho c_p V)): exact decay of T - T_e over dt for volume V (m3) exchanging
    through area A (m2) with coefficient K_e (W m-2 degC-1) (Newton relaxation, Edinger et al. 1968)."""
    return torch.exp(-k_e * area_m2 * dt / (RHO_W * CP_W * volume_m3))


# --------------------------------------------------------------------------------------- state etc.
