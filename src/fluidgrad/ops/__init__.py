"""Fluid kernels on the MAC grid; each is a primitive with hand-written VJP and JVP."""

from .advection import advect, advect_velocity, maccormack, semi_lagrangian
from .stencils import center_to_face, divergence, face_to_center, gradient, laplacian, vorticity

__all__ = ["advect", "advect_velocity", "center_to_face", "divergence", "face_to_center",
           "gradient", "laplacian", "maccormack", "semi_lagrangian", "vorticity"]
