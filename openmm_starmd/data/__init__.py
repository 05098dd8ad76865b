"""MD trajectories -> training examples.

* :mod:`~openmm_starmd.data.readers`: one ``TrajectorySource`` interface over topology +
  trajectory pairs (any mdtraj format), the ``starmd simulate`` chunked layout, ATLAS,
  mdCATH HDF5 and precomputed OpenFold features (``find_sources(path)``).
* :mod:`~openmm_starmd.data.dataset`: frames + torsions cached per trajectory, examples of
  L frames at log-uniform strides with residue crops (``TrajectoryDataset``, ``collate``).
* :mod:`~openmm_starmd.data.structures`: the offline structures ``starmd simulate`` runs.

Names are imported on first use, so ``starmd simulate`` (which needs only the structure
list) does not pay for importing torch.
"""
import importlib

_EXPORTS = {
    "Batch": "dataset", "DatasetConfig": "dataset", "Example": "dataset", "FramesTrajectory": "dataset",
    "TrajectoryDataset": "dataset", "collate": "dataset",
    "FileTrajectorySource": "readers", "MDCATHSource": "readers", "OpenFoldFeatures": "readers",
    "TrajectorySource": "readers", "find_sources": "readers",
    "STRUCTURES": "structures", "StructureSource": "structures", "get_structure": "structures",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'openmm_starmd.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"openmm_starmd.data.{_EXPORTS[name]}"), name)
