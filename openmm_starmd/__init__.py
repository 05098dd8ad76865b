"""openmm-starmd: STAR-MD as an accelerated propagator for OpenMM simulations.

The package is layered (imports run downwards only)::

    openmm/, cli.py  ->  model/  ->  diffusion/  ->  geometry/
    training/ -> model/, data/;   data/, evaluation/ -> geometry/
"""
__version__ = "0.1.0"


def load_model(name_or_path: str = "default", device=None):
    """Return a ready STAR-MD model (eval mode) from a shipped name or a checkpoint path.

    See :func:`openmm_starmd.model.checkpoint.load_model`.
    """
    from openmm_starmd.model.checkpoint import load_model as _load

    return _load(name_or_path, device=device)


def __getattr__(name: str):
    """Lazy exports, so ``import openmm_starmd`` does not import OpenMM or the model."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'openmm_starmd' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


# public name -> the module that defines it (imported on first use)
_LAZY = {
    "StarMDGenerator": "openmm_starmd.openmm.generator",
    "GeneratorOptions": "openmm_starmd.openmm.generator",
    "GeneratorStatistics": "openmm_starmd.openmm.generator",
    "StrideOutsideTrainingWarning": "openmm_starmd.openmm.generator",
    "GateConfig": "openmm_starmd.openmm.gate",
    "InvalidFrameError": "openmm_starmd.openmm.gate",
    "FallbackFractionError": "openmm_starmd.openmm.gate",
    "FallbackWarning": "openmm_starmd.openmm.gate",
    "RebuiltEnergyWarning": "openmm_starmd.openmm.generator",
    "RelaxConfig": "openmm_starmd.openmm.relax",
}


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["load_model", "__version__", *_LAZY]
