"""Fluid kernels on the MAC grid; each is a primitive with hand-written VJP and JVP."""

from .advection import SCHEMES, advect, advect_state, advect_velocity, maccormack, register_scheme, semi_lagrangian
from .dispatch import KERNELS, record, use_reference
from .diffusion import diffuse_velocity, explicit_diffusion, implicit_diffusion
from .forces import apply_force, buoyancy, vorticity_confinement
from .pressure import PressureSolve, SolveError, make_incompressible, project, project_fixed
from .sources import add_source, close_faces, impose, region_mask
from .stencils import center_to_face, divergence, face_to_center, gradient, laplacian, vorticity

__all__ = ["KERNELS", "SCHEMES", "record", "register_scheme", "use_reference", "apply_force", "buoyancy", "vorticity_confinement", "add_source", "close_faces", "impose", "region_mask", "diffuse_velocity", "explicit_diffusion", "implicit_diffusion", "PressureSolve", "SolveError", "make_incompressible", "project", "project_fixed", "advect", "advect_state", "advect_velocity", "center_to_face", "divergence", "face_to_center",
           "gradient", "laplacian", "maccormack", "semi_lagrangian", "vorticity"]
