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
MELT_TEMP = 1.5  # degC: snowmelt water temperature (PRMS-SNTemp melt_temp default)
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


def surface_flux_terms(t_w, air_temp, shortwave, rel_humidity, wind, shade, cloud_cover=0.0,
                       albedo: float = 0.1) -> dict[str, torch.Tensor]:
    """Surface heat-flux terms (W m-2, positive into the water) at water temperature t_w (degC).

    shortwave   (1 - albedo)(1 - shade) SW                                   net solar
    longwave_in eps_a (1 + 0.17 C^2) sigma Ta^4                             atmosphere; eps_a = 1.24 (e_a/Ta)^(1/7)
                (Brutsaert 1975, WRR 11(5), e_a hPa, Ta K); cloud factor TVA (1972) as in Chapra (1997) eq. 30.11
                and PRMS-SNTemp (Sanders et al. 2017, USGS TM 6-D4, eq. 10)
    longwave_out -eps_w sigma T^4                                            water emission, eps_w = 0.97
    evaporation -f(U) (e_s(T) - e_a)                                         Dalton's law, e in mmHg
    sensible    -0.47 f(U) (T - Ta)                                          Bowen ratio, c1 = 0.47 mmHg degC-1
    with f(U) = 9.2 + 0.46 U^2 W m-2 mmHg-1 (Brady, Graves & Geyer 1969; Chapra 1997, lecture 30), e_s Tetens
    (1930), e_a = RH e_s(Ta). Args: t_w, air_temp (degC), shortwave (W m-2), rel_humidity (0-1), wind (m/s),
    shade (0-1, shortwave only), cloud_cover (0-1).
    """
    ta_k = air_temp + KELVIN
    ea = rel_humidity * saturation_vapor_pressure(air_temp)
    f_u = 9.2 + 0.46 * wind * wind  # W m-2 mmHg-1
    eps_a = 1.24 * (ea / ta_k).pow(1.0 / 7.0) * (1.0 + 0.17 * cloud_cover * cloud_cover)
    return {"shortwave": (1.0 - albedo) * (1.0 - shade) * shortwave,
            "longwave_in": eps_a * SIGMA * ta_k.pow(4),
            "longwave_out": -EPS_WATER * SIGMA * (t_w + KELVIN).pow(4),
            "evaporation": -f_u * HPA_TO_MMHG * (saturation_vapor_pressure(t_w) - ea),
            "sensible": -0.47 * f_u * (t_w - air_temp)}


def net_surface_flux(t_w, air_temp, shortwave, rel_humidity, wind, shade, cloud_cover=0.0,
                     albedo: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """H(T) = sum of :func:`surface_flux_terms` (W m-2) and dH/dT (W m-2 degC-1, analytic, always < 0).

    H is strictly decreasing and concave in T (-T^4 and -e_s(T) are concave; e_s of Tetens is convex for
    T < ~1800 degC), the property the Newton solver of :func:`energy_balance_equilibrium` rests on."""
    terms = surface_flux_terms(t_w, air_temp, shortwave, rel_humidity, wind, shade, cloud_cover, albedo)
    h = sum(terms.values())
    f_u = 9.2 + 0.46 * wind * wind
    es = saturation_vapor_pressure(t_w)
    dh = (-4.0 * EPS_WATER * SIGMA * (t_w + KELVIN).pow(3)
          - f_u * HPA_TO_MMHG * es * 17.27 * 237.3 / (t_w + 237.3).pow(2) - 0.47 * f_u)
    return h, dh


def linearised_equilibrium(air_temp, shortwave, rel_humidity, wind, shade, cloud_cover=0.0, albedo: float = 0.1):
    """The air-temperature linearisation T_e = Ta + H(Ta)/K_e(Ta), K_e = -dH/dT(Ta) (Edinger, Duttweiler &
    Geyer 1968): one Newton step from Ta. Because H is concave it is an UPPER bound of the true root
    (the tangent lies above H), the bias behind issue 17's too-warm water. Kept for comparison."""
    h, dh = net_surface_flux(air_temp, air_temp, shortwave, rel_humidity, wind, shade, cloud_cover, albedo)
    return air_temp - h / dh, -dh


def equilibrium_root(flux, inputs: dict, anchor, tol: float = 1e-9, max_iter: int = 60,
                     bracket: tuple[float, float] = (-100.0, 500.0)):
    """Root T_e (degC) of a strictly decreasing surface energy balance H(T) and the chord exchange coefficient
    K_e = H(a)/(T_e - a) (W m-2 degC-1) through an anchor temperature a; any exchange formulation
    (:mod:`rivergraph.physics.exchange`).

    ``flux(t, **inputs) -> (H, dH/dT)`` (W m-2, W m-2 degC-1); ``inputs`` tensors/floats broadcast together;
    ``anchor`` [..] degC (the air temperature for the Chapra/Edinger balance, the inflow water temperature for
    PRMS-SNTemp's), also the Newton start. Newton's method safeguarded by bisection in ``bracket`` (every
    iterate keeps H(lo) > 0 > H(hi); a step leaving the bracket is replaced by its midpoint), so it converges
    for any strictly decreasing H, concave (Newton is then monotone from the first step on, Chapra/Edinger)
    or not (PRMS-SNTemp's balance has a convex T^2 term). Iterates run without autograd until |step| < tol
    degC (at least 64 ulp of T in kelvin); the gradient is the implicit-function theorem's,
    dT_e/dtheta = -(dH/dtheta)/(dH/dT) at the root, through ONE differentiable Newton step from the detached
    root. The chord is exact at the anchor and at the root, lies between the tangents there and is > 0 for a
    decreasing H; where T_e ~ a it is the tangent -H'(a). Raises if H has no sign change in the bracket."""
    det = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in inputs.items()}
    a = anchor.detach()
    with torch.no_grad():
        x = torch.broadcast_tensors(a, *[v for v in det.values() if torch.is_tensor(v)])[0].clone()
        lo, hi = torch.full_like(x, bracket[0]), torch.full_like(x, bracket[1])
        h_lo, h_hi = flux(lo, **det)[0], flux(hi, **det)[0]
        if not (bool((h_lo > 0).all()) and bool((h_hi < 0).all())):
            raise ValueError(f"equilibrium temperature: the energy balance has no root in {bracket} degC "
                             f"(non-finite or out-of-range inputs?)")
        tol = max(tol, 64.0 * torch.finfo(x.dtype).eps * (KELVIN + float(x.abs().max())))  # float32: ~1e-4 degC
        x = x.clamp(bracket[0], bracket[1])
        for _ in range(max_iter):
            h, dh = flux(x, **det)
            pos = h > 0
            lo, hi = torch.where(pos, x, lo), torch.where(pos, hi, x)
            new = x - h / dh
            new = torch.where(torch.isfinite(new) & (new >= lo) & (new <= hi), new, 0.5 * (lo + hi))
            step = torch.minimum((new - x).abs(), hi - lo)
            x = new
            if float(step.max()) < tol:
                break
        else:
            raise RuntimeError(f"equilibrium temperature: Newton did not converge in {max_iter} iterations "
                               f"(last step {float(step.max()):.3g} degC)")
        _, dh_star = flux(x, **det)
    h, _ = flux(x, **inputs)
    t_e = x - h / dh_star
    h_a, dh_a = flux(anchor, **inputs)
    gap = t_e - anchor
    small = gap.detach().abs() < 1e-6
    k_e = torch.where(small, -dh_a, h_a / torch.where(small, torch.ones_like(gap), gap))
    return t_e, k_e


def energy_balance_equilibrium(air_temp, shortwave, rel_humidity, wind, shade, cloud_cover=0.0,
                               albedo: float = 0.1, tol: float = 1e-9, max_iter: int = 60):
    """Equilibrium temperature T_e (degC), the root of the surface energy balance H(T_e) = 0 of
    :func:`net_surface_flux`, and the exchange coefficient K_e (W m-2 degC-1) of the linear law
    H(T) ~ K_e (T_e - T) used by the transport scheme (:func:`equilibrium_root`).

    Root: Newton's method from the air temperature (as SNTEMP, Theurer, Voos & Miller 1984, and PRMS-SNTemp's
    ``teak1``, Sanders et al. 2017, USGS TM 6-D4, solve their energy balance). H is strictly decreasing and
    concave (:func:`net_surface_flux`), so the first step lands at or above the root (it is the classical
    linearisation, :func:`linearised_equilibrium`) and every later step decreases monotonically to it.
    Gradient by the implicit-function theorem (one differentiable Newton step at the detached root).

    K_e: the chord slope K_e = H(Ta)/(T_e - Ta) through the air temperature and the root (the tangent -H'(Ta)
    where T_e ~ Ta), so the linear law is exact both at the air temperature (the flux the classical
    linearisation gets right) and at the equilibrium (which it overshoots). The tangent at the root would
    overstate the flux far from it (up to ~2x for noon sun); the chord lies between the tangents at Ta and T_e,
    so K_e > 0 always. Args as :func:`surface_flux_terms` (tensors broadcast together).
    """
    air_temp = torch.as_tensor(air_temp)
    inputs = dict(air_temp=air_temp, shortwave=shortwave, rel_humidity=rel_humidity, wind=wind, shade=shade,
                  cloud_cover=cloud_cover)
    flux = lambda t, **kw: net_surface_flux(t, albedo=albedo, **kw)  # noqa: E731
    return equilibrium_root(flux, inputs, air_temp, tol=tol, max_iter=max_iter)


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


def lateral_temperature(air_temp, t_ss, t_gw, ss_frac, gw_frac, melt_share=None, melt_temp: float = MELT_TEMP):
    """Temperature (degC) of lateral inflow: groundwater share gw_frac at t_gw, subsurface share
    (1 - gw_frac) ss_frac at t_ss, the rest surface runoff at the air temperature; liquid water, so each
    source is floored at 0 degC (PRMS-SNTemp floors the mixture instead). ``melt_share`` (0-1): share of the
    surface and subsurface water that is snowmelt at ``melt_temp`` (PRMS-SNTemp ``lat_inflow``: melt/(melt +
    rain), melt_temp 1.5 degC; Sanders et al. 2017)."""
    t_sur = air_temp.clamp_min(0.0)
    t_ss = t_ss.clamp_min(0.0)
    if melt_share is not None:
        t_sur = melt_share * melt_temp + (1.0 - melt_share) * t_sur
        t_ss = melt_share * melt_temp + (1.0 - melt_share) * t_ss
    return gw_frac * t_gw.clamp_min(0.0) + (1.0 - gw_frac) * (ss_frac * t_ss + (1.0 - ss_frac) * t_sur)


def relaxation_factor(k_e, area_m2, dt: float, volume_m3):
    """e = exp(-K_e A dt / (rho c_p V)): exact decay of T - T_e over dt for volume V (m3) exchanging
    through area A (m2) with coefficient K_e (W m-2 degC-1) (Newton relaxation, Edinger et al. 1968)."""
    return torch.exp(-k_e * area_m2 * dt / (RHO_W * CP_W * volume_m3))


# --------------------------------------------------------------------------------------- state etc.
