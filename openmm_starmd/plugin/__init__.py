"""The C++ OpenMM plugin: STAR-MD jumps as an ``openmm.Integrator`` (see docs/plugin.md).

    from openmm_starmd.plugin import GeneratorIntegrator, export_propagator
    export_propagator(topology, positions, "villin_starmd.pt", model="default")
    integrator = GeneratorIntegrator("villin_starmd.pt", 1.25*unit.nanoseconds)  # the weights' sampler
    simulation = app.Simulation(topology, system, integrator, Platform.getPlatformByName("CPU"))
    simulation.step(8)          # 8 jumps; reporters see every one

``GeneratorIntegrator`` comes from the compiled plugin (``starmd build-plugin``); importing it
before the plugin is built raises an ImportError that says so. Everything else in
``openmm_starmd`` works without the plugin.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Optional

from openmm_starmd.plugin.build import KERNEL_LIBRARY, PYTHON_MODULE, build_plugin, default_prefix, find_plugin
from openmm_starmd.plugin.propagator import export_propagator

_loaded: dict = {}


def load_plugin(prefix: Optional[os.PathLike] = None):
    """Import the compiled plugin's Python module and load its kernels into OpenMM (once per prefix).

    Raises ImportError when no built plugin is found."""
    found = find_plugin(prefix)
    if found is None:
        where = Path(prefix) if prefix is not None else default_prefix()
        raise ImportError(f"the STAR-MD C++ plugin is not built (looked in {where}); build it with "
                          "'starmd build-plugin' (needs cmake, swig and a C++ compiler: pip install cmake swig), "
                          "or set OPENMM_STARMD_PLUGIN_DIR to the folder of an existing build. "
                          "The Python StarMDGenerator works without it.")
    key = str(found.resolve())
    if key in _loaded:
        return _loaded[key]
    if _loaded:
        raise ImportError(f"a STAR-MD plugin from {next(iter(_loaded))} is already loaded in this process; cannot also load {key}")
    import openmm
    import torch  # noqa: F401  (libtorch is loaded once, by torch, before the kernel library needs it)

    openmm.Platform.loadPluginLibrary(str(found / "lib" / "plugins" / KERNEL_LIBRARY))
    sys.path.insert(0, str(found / "python"))
    try:
        module = importlib.import_module(PYTHON_MODULE)
    finally:
        sys.path.remove(str(found / "python"))
    _loaded[key] = module
    return module


def __getattr__(name: str):
    if name == "GeneratorIntegrator":
        return load_plugin().GeneratorIntegrator
    raise AttributeError(f"module 'openmm_starmd.plugin' has no attribute {name!r}")


__all__ = ["GeneratorIntegrator", "export_propagator", "build_plugin", "find_plugin", "load_plugin"]
