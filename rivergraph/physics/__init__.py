"""Pure physics: Muskingum coefficients and storage, channel geometries, heat exchange."""
