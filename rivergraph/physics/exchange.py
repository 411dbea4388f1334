"""Surface heat-exchange formulations of stream temperature: a registry of energy balances H(T) (W m-2, positive
into the water) selected by name (``StreamTemperature(surface_exchange=...)``, config ``surface_exchange``).

Each formulation gives its flux terms at a water temperature T, the derivative dH/dT and the anchor of the
chord exchange coefficient; :func:`rivergraph.physics.heat.equilibrium_root` solves H(T_e) = 0 for any of them.

``chapra_edinger`` (default)
    The balance of Chapra (1997, Surface Water-Quality Modeling, lecture 30) and Edinger, Duttweiler & Geyer
    (1968): sky longwave (Brutsaert 1975) at the AIR temperature, Dalton evaporation with a wind function and
    Bowen sensible heat against the air temperature (:func:`rivergraph.physics.heat.surface_flux_terms`).
    Anchor: the air temperature.

``prms_sntemp``
    The balance of SNTEMP (Theurer, Voos & Miller 1984, USGS FWS/OBS-84/15) as implemented in PRMS-SNTemp
    (Markstrom 2012, USGS OFR 2012-1116; Sanders, Markstrom, Regan & Atkinson 2017, USGS TM 6-D4; PRMS 5
    ``stream_temp.f90`` ``equilb``/``teak1``, pywatershed ``PRMSStreamTemp``, read for the equations):

    ==================  ========================================================================================
    shortwave           (1 - albedo)(1 - shade) SW                           (SW already times (1 - PRMS shade))
    longwave_in         0.97 (0.61 + 0.05 sqrt(e_o)) (1 + 0.17 C^2) v_sky sigma (T_o + 273.15)^4
                        sky longwave (Brunt 1932 emissivity, TVA 1972 cloud factor, water absorptivity 0.97) at
                        the INFLOW water temperature T_o, e_o = RH e_s(T_o) hPa; v_sky = (1 - sky_shade)(1 - shade)
    vegetation_longwave 0.97 x 0.9526 sigma v_veg (T_o + 273.15)^4: riparian vegetation (emissivity 0.9526) at
                        T_o; v_veg = veg_shade + (1 - sky_shade) shade (extra shade is vegetation)
    longwave_out        -0.9526 sigma (T + 273.15)^4                           water emission (SNTEMP's 0.9526)
    evaporation         -E L_v(T), E = potential evaporation (m s-1), L_v = 2.495e9 - 2.36e6 T J m-3
    sensible            -E L_v(T) B (T - T_o), Bowen (1926) ratio B = 0.00061 p / (e_s(T_o)(1 - min(RH, .99)))
                        degC-1, p = 1013 - 0.1055 z hPa: referenced to the inflow temperature, as PRMS does
    friction            rho g (Q/W) S = 9805 Q S / W                 (Q inflow m3 s-1, W width m, S slope)
    ground_conduction   K_g (T_g - T), K_g = 1.65 W m-2 degC-1 (SNTEMP AKZ), T_g the groundwater temperature
    ==================  ========================================================================================

    Anchor: T_o. Over the whole water surface (``area_factor`` 1).

``prms_sntemp_as_coded``
    The same balance acting over width x length / 1000: a reproduction mode of PRMS 5 as coded, not physics.
    ``stream_temp_init`` converts ``Seg_length`` from metres to kilometres ("convert stream length in meters
    to km") and ``twavg`` then forms the exchange exponent -(Ak1 width / 4182e3) length / Q with the width in
    metres, so PRMS's water exchanges heat over 1/1000 of its surface (pywatershed 3.0.0 keeps this,
    ``seg_length_km``). Use it to reproduce PRMS-SNTemp's temperatures, not to model a river.

    In both PRMS modes the sky, vegetation and Bowen terms depend on T_o, so the model iterates T_o to the
    flow-weighted temperature of the step's inflow (a fixed point, :class:`rivergraph.models.StreamTemperature`).
    H is strictly decreasing for |T| < ~500 degC (:func:`prms_sntemp_slope`: the E L_v B term dominates the
    convex 2.36e6 E B T^2 term) but not always concave (near-saturated air makes B large), hence the
    bracketed Newton of :func:`rivergraph.physics.heat.equilibrium_root`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .heat import KELVIN, SIGMA, net_surface_flux, saturation_vapor_pressure, surface_flux_terms

__all__ = ["ExchangeFormulation", "EXCHANGES", "get_exchange", "register_exchange", "prms_sntemp_terms",
           "prms_sntemp_slope", "exchange_equilibrium", "friction_heat", "air_pressure_hpa"]

# SNTEMP / PRMS-SNTemp constants (Theurer et al. 1984; stream_temp.f90)
EPS_WATER_SNTEMP = 0.9526  # emissivity of water and of riparian vegetation
ABS_LONGWAVE = 0.97  # longwave absorptivity of water
LATENT_HEAT_VOL = 2.495e9  # J m-3 at 0 degC (2.495e6 J kg-1 x 1000 kg m-3)
LATENT_HEAT_SLOPE = 2.36e6  # J m-3 degC-1 decrease of the latent heat with temperature
GROUND_CONDUCTANCE = 1.65  # W m-2 degC-1, SNTEMP AKZ (streambed conduction to the groundwater temperature)
RHO_G = 9805.0  # N m-3, specific weight of water in SNTEMP's friction heat


def prms_sntemp_terms(t_w, t_ref, shortwave, rel_humidity, cloud_cover, shade, sky_shade, veg_shade, pet_m_s,
                      pressure_hpa, friction, t_ground, albedo: float = 0.1) -> dict[str, torch.Tensor]:
    """PRMS-SNTemp's surface heat-flux terms (W m-2, positive into the water) at water temperature t_w (degC)
    for inflow (reference) temperature t_ref (degC); table in the module docstring.

    Args: shortwave (W m-2, before the extra ``shade``), rel_humidity (0-1), cloud_cover (0-1), shade (0-1,
    extra riparian shade on top of PRMS's), sky_shade (0-1, PRMS ``seg_shade``), veg_shade (0-1, PRMS
    ``seg_svi``), pet_m_s (potential evaporation, m s-1), pressure_hpa, friction (W m-2, :func:`friction_heat`),
    t_ground (degC)."""
    tk_ref4 = (t_ref + KELVIN).pow(4)
    es_ref = saturation_vapor_pressure(t_ref)
    v_sky = (1.0 - sky_shade) * (1.0 - shade)
    v_veg = veg_shade + (1.0 - sky_shade) * shade
    eps_sky = 0.61 + 0.05 * torch.sqrt(rel_humidity * es_ref)
    bowen = 0.00061 * pressure_hpa / (es_ref * (1.0 - torch.clamp(torch.as_tensor(rel_humidity), max=0.99)))
    latent = pet_m_s * (LATENT_HEAT_VOL - LATENT_HEAT_SLOPE * t_w)
    return {"shortwave": (1.0 - albedo) * (1.0 - shade) * shortwave,
            "longwave_in": ABS_LONGWAVE * eps_sky * (1.0 + 0.17 * cloud_cover * cloud_cover) * v_sky * SIGMA * tk_ref4,
            "vegetation_longwave": ABS_LONGWAVE * EPS_WATER_SNTEMP * SIGMA * v_veg * tk_ref4,
            "longwave_out": -EPS_WATER_SNTEMP * SIGMA * (t_w + KELVIN).pow(4),
            "evaporation": -latent,
            "sensible": -latent * bowen * (t_w - t_ref),
            "friction": friction + 0.0 * t_w,
            "ground_conduction": GROUND_CONDUCTANCE * (t_ground - t_w)}


def prms_sntemp_slope(t_w, t_ref, rel_humidity, pet_m_s, pressure_hpa, **_) -> torch.Tensor:
    """dH/dT (W m-2 degC-1) of :func:`prms_sntemp_terms` (analytic; < 0 for |T| < ~500 degC)."""
    es_ref = saturation_vapor_pressure(t_ref)
    bowen = 0.00061 * pressure_hpa / (es_ref * (1.0 - torch.clamp(torch.as_tensor(rel_humidity), max=0.99)))
    latent = LATENT_HEAT_VOL - LATENT_HEAT_SLOPE * t_w
    return (-4.0 * EPS_WATER_SNTEMP * SIGMA * (t_w + KELVIN).pow(3) - GROUND_CONDUCTANCE
            + pet_m_s * LATENT_HEAT_SLOPE * (1.0 + bowen * (t_w - t_ref)) - pet_m_s * latent * bowen)


def friction_heat(inflow_m3s, width_m, slope) -> torch.Tensor:
    """Heat dissipated by friction (W m-2): rho g Q S / W (Theurer et al. 1984; PRMS ``equilb`` ``hf``)."""
    return RHO_G * inflow_m3s * slope / width_m


def air_pressure_hpa(elevation_m) -> torch.Tensor:
    """Air pressure (hPa) at elevation z (m): 1013 - 0.1055 z (PRMS-SNTemp's linear lapse)."""
    return 1013.0 - 0.1055 * torch.as_tensor(elevation_m)


@dataclass(frozen=True)
class ExchangeFormulation:
    """A named surface energy balance. ``terms(t_w, **inputs)`` -> {name: W m-2}; ``slope(t_w, **inputs)`` ->
    dH/dT; ``inputs``: the keyword names it needs; ``anchor``: the input holding the chord anchor and Newton
    start (``air_temp`` or ``t_ref``); ``reference_dependent``: True when the terms depend on the water's
    inflow temperature ``t_ref`` (solved as a fixed point by the model); ``area_factor``: the share of the
    water surface (width x length) the exchange acts over in the transport scheme (1: all of it)."""

    name: str
    terms: Callable[..., dict]
    slope: Callable[..., torch.Tensor]
    inputs: tuple[str, ...]
    anchor: str
    reference_dependent: bool
    summary: str
    area_factor: float = 1.0

    def flux(self, t_w, **inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, dH/dT) at t_w."""
        return sum(self.terms(t_w, **inputs).values()), self.slope(t_w, **inputs)


EXCHANGES: dict[str, ExchangeFormulation] = {}
"""Registered surface-exchange formulations by name."""


def register_exchange(form: ExchangeFormulation) -> ExchangeFormulation:
    """Add a formulation to :data:`EXCHANGES` (its name must be new)."""
    if form.name in EXCHANGES:
        raise ValueError(f"surface exchange '{form.name}' is already registered")
    EXCHANGES[form.name] = form
    return form


def get_exchange(name: str) -> ExchangeFormulation:
    """The registered formulation ``name``; an unknown name raises naming the choices."""
    try:
        return EXCHANGES[name]
    except KeyError:
        raise ValueError(f"unknown surface exchange '{name}'; choose from {sorted(EXCHANGES)}") from None


def exchange_equilibrium(form: ExchangeFormulation, inputs: dict, albedo: float = 0.1):
    """(T_e, K_e) of formulation ``form`` for ``inputs`` (its :attr:`ExchangeFormulation.inputs`, tensors
    broadcast together): :func:`rivergraph.physics.heat.equilibrium_root` with the formulation's anchor."""
    from .heat import equilibrium_root

    missing = [k for k in form.inputs if k not in inputs]
    if missing:
        raise ValueError(f"surface exchange '{form.name}' needs the inputs {missing}")
    kw = {k: inputs[k] for k in form.inputs}
    flux = lambda t, **kk: form.flux(t, albedo=albedo, **kk)  # noqa: E731
    return equilibrium_root(flux, kw, torch.as_tensor(kw[form.anchor]))


def _chapra_slope(t_w, **kw) -> torch.Tensor:
    return net_surface_flux(t_w, **kw)[1]


register_exchange(ExchangeFormulation(
    "chapra_edinger", surface_flux_terms, _chapra_slope,
    ("air_temp", "shortwave", "rel_humidity", "wind", "shade", "cloud_cover"), "air_temp", False,
    "Chapra 1997 / Edinger et al. 1968: sky longwave, Dalton and Bowen at the air temperature"))
_PRMS_INPUTS = ("t_ref", "shortwave", "rel_humidity", "cloud_cover", "shade", "sky_shade", "veg_shade", "pet_m_s",
                "pressure_hpa", "friction", "t_ground")
register_exchange(ExchangeFormulation(
    "prms_sntemp", prms_sntemp_terms, prms_sntemp_slope, _PRMS_INPUTS, "t_ref", True,
    "SNTEMP / PRMS-SNTemp (Theurer et al. 1984; Sanders et al. 2017): sky longwave and Bowen at the inflow "
    "temperature, shaded sky plus vegetation longwave, PET evaporation, friction, ground conduction; over the "
    "whole water surface"))
register_exchange(ExchangeFormulation(
    "prms_sntemp_as_coded", prms_sntemp_terms, prms_sntemp_slope, _PRMS_INPUTS, "t_ref", True,
    "prms_sntemp over width x length/1000, as PRMS 5 codes it (a reproduction mode, not physics: "
    "stream_temp_init converts seg_length to km, twavg multiplies it with the per-metre rate Ak1 width/rho c)",
    area_factor=1e-3))
