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
    if name == "StarMDGenerator":
        from openmm_starmd.openmm.generator import StarMDGenerator

        return StarMDGenerator
    raise AttributeError(f"module 'openmm_starmd' has no attribute {name!r}")


__all__ = ["load_model", "StarMDGenerator", "__version__"]
