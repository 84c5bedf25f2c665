"""Geometry: EG3D cameras, UV maps, vertex normals, the tri-plane space and the rasterisers."""
