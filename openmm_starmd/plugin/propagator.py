"""The system-bound propagator: one TorchScript file that the C++ plugin runs for one OpenMM system.

The C++ ``GeneratorIntegrator`` does not reimplement coarse-graining or the all-atom rebuild.
:func:`export_propagator` binds the core exported by ``starmd export`` to one system's index
tables (:class:`~openmm_starmd.openmm.coarse_grain.ProteinMap`) and saves a scripted module whose
methods are, for ``A`` atoms and ``N`` residues::

    start(capacity_frames)                                         reset the rollout (KV cache)
    coarse(positions [A,3] f64)            -> rots [N,3,3], trans [N,3]      (coarse_grain)
    append(rots, trans, log10_stride [1])                         context frame (Rollout._append)
    sample(log10_stride [1], num_steps, ode, noise_scale) -> rots, trans, torsions [N,7,2]
                                              (Rollout.sample: core.sample_frame + Kabsch align,
                                               at the time spacing fixed at export)
    rebuild(positions [A,3] f64, rots, trans, torsions) -> positions [A,3] f64     (rebuild_positions,
    rebuild_periodic(positions, box [3,3], rots, trans, torsions) -> positions        no / rectangular box)
    set_core_device(device)              the caller moved the core submodule there (the rest stays on CPU)

``coarse``, ``rebuild`` and the alignment are *traces* of the very functions the Python
Generator calls (:func:`~openmm_starmd.openmm.rebuild.coarse_grain`,
:func:`~openmm_starmd.openmm.rebuild.rebuild_protein`,
:func:`~openmm_starmd.openmm.rebuild.carry_other_atoms`), so both paths apply the same rules:
own-geometry heavy atoms, carried atoms in their group frames, and solvent/ions/ligands near the
protein moved with it (``rebuild_periodic`` with minimum-image distances in a rectangular box,
``rebuild`` with plain distances for no box or a triclinic one, as the Generator does).
Randomness comes from torch's global generator: the caller seeds it before ``append`` and
``sample`` with :func:`~openmm_starmd.model.rollout._derive_seed` of (seed, frame, stream), as
:class:`~openmm_starmd.model.rollout.Rollout` does; the C++ kernel computes the same seeds.
"""

import copy
import json
import math
import os
import warnings
import zipfile
from typing import List, Tuple

import numpy as np
import torch
from torch import nn

from openmm_starmd.geometry.superpose import kabsch
from openmm_starmd.model.rollout import check_noise_switch, check_time_spacing, sample_frame_arguments
from openmm_starmd.openmm.coarse_grain import (
    ProteinMap,
    atom_label,
    check_chirality,
    check_finite_positions,
    make_whole,
    map_topology,
    protein_bond_tree,
    warn_chain_gaps,
)
from openmm_starmd.openmm.rebuild import (
    CoarseFrame,
    carry_other_atoms,
    coarse_grain,
    other_atom_groups,
    rebuild_protein,
)

FORMAT = "openmm-starmd-propagator"
FORMAT_VERSION = 1


class _SystemGeometry(nn.Module):
    """Coarse-grain, align and rebuild for one system (traced with :func:`torch.jit.trace_module`)."""

    def __init__(self, pmap: ProteinMap, residue_of_atom: np.ndarray):
        super().__init__()
        self.pmap = pmap
        self.group = other_atom_groups(pmap, residue_of_atom)  # [K] residue group of each other atom

    def coarse(self, positions_nm: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """positions ``[A, 3]`` float64 nm -> backbone rots ``[N, 3, 3]``, trans ``[N, 3]`` (float32)."""
        frame = coarse_grain(self.pmap, positions_nm)
        return frame.rots, frame.trans

    def align(self, rots: torch.Tensor, trans: torch.Tensor, target_trans: torch.Tensor
              ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Superpose a sampled frame (rots ``[1, N, 3, 3]``, trans ``[1, N, 3]``) on ``target_trans``
        ``[1, N, 3]`` by its CA atoms, exactly as ``Rollout.sample(align=True)`` does."""
        rot, t = kabsch(trans, target_trans)  # [1, 3, 3], [1, 3]
        return rot[:, None] @ rots, torch.einsum("bij,bnj->bni", rot, trans) + t[:, None]

    def rebuild(self, positions_nm: torch.Tensor, rots: torch.Tensor, trans: torch.Tensor, torsions: torch.Tensor
                ) -> torch.Tensor:
        """positions ``[A, 3]`` float64 + new frame (``[N, 3, 3]``, ``[N, 3]``, ``[N, 7, 2]``) -> ``[A, 3]`` float64."""
        new = rebuild_protein(self.pmap, positions_nm, CoarseFrame(rots, trans, torsions))
        return carry_other_atoms(self.pmap, self.group, positions_nm, new, None)

    def rebuild_periodic(self, positions_nm: torch.Tensor, box_nm: torch.Tensor, rots: torch.Tensor, trans: torch.Tensor,
                         torsions: torch.Tensor) -> torch.Tensor:
        """As :meth:`rebuild`, other atoms by minimum-image distances in the rectangular box ``[3, 3]`` (rows)."""
        new = rebuild_protein(self.pmap, positions_nm, CoarseFrame(rots, trans, torsions))
        return carry_other_atoms(self.pmap, self.group, positions_nm, new, torch.diagonal(box_nm))


def trace_geometry(pmap: ProteinMap, positions_nm: np.ndarray, residue_of_atom: np.ndarray) -> torch.jit.ScriptModule:
    """Trace :class:`_SystemGeometry`'s methods on example inputs taken from ``positions_nm`` ``[A, 3]``
    (``residue_of_atom`` ``[A]``: topology residue index of every atom)."""
    geom = _SystemGeometry(pmap, residue_of_atom)
    pos = torch.as_tensor(np.asarray(positions_nm, dtype=np.float64))
    frame = coarse_grain(pmap, positions_nm)
    extent = (pos.max(0).values - pos.min(0).values).max().item() + 1.0  # any box: the trace is generic in it
    box = torch.eye(3, dtype=torch.float64) * extent
    inputs = {
        "coarse": (pos,),
        "align": (frame.rots[None], frame.trans[None], frame.trans[None] + 0.01),
        "rebuild": (pos, frame.rots, frame.trans, frame.torsions),
        "rebuild_periodic": (pos, box, frame.rots, frame.trans, frame.torsions),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace_module(geom, inputs, check_trace=False)


class SystemPropagator(nn.Module):
    """The scripted module :func:`export_propagator` saves (see the module docstring for its methods).

    Args:
        core: a scripted :class:`~openmm_starmd.model.core.StarMDCore` (as ``starmd export`` writes it).
        geometry: the traced system geometry (:func:`trace_geometry`).
        pmap: the system's protein map; num_atoms: atoms ``A`` of the whole system.
        bond_tree: ``[E, 2]`` (parent, child) bonds of the protein in breadth-first order
            (:func:`~openmm_starmd.openmm.coarse_grain.protein_bond_tree`): the C++ kernel makes the
            protein whole along them in a periodic box, as the Generator does.
        atom_labels: ``[A]`` names such as "CA of LYS 12 (chain A)" for the kernel's messages.
        time_spacing: the reverse-diffusion time spacing of :meth:`sample` (fixed in the file).
        noise_switch_t: the diffusion time above which :meth:`sample` takes the exact SDE (fixed in
            the file; 1: its noise scale at every step).
        num_steps, noise_scale: the weights' sampler, which the C++ ``GeneratorIntegrator`` uses when
            its own are left at their defaults (0 steps, noise -1).
    """

    num_atoms: int
    num_residues: int
    num_other_atoms: int
    num_frames: int
    core_device: str
    atom_labels: List[str]
    time_spacing: float
    noise_switch_t: float
    num_steps: int
    noise_scale: float

    def __init__(self, core: torch.jit.ScriptModule, geometry: torch.jit.ScriptModule, pmap: ProteinMap, num_atoms: int,
                 bond_tree: np.ndarray, atom_labels: List[str], time_spacing: float = 1.0, num_steps: int = 50,
                 noise_scale: float = 0.5, noise_switch_t: float = 1.0):
        super().__init__()
        self.time_spacing = float(time_spacing)
        self.noise_switch_t = float(noise_switch_t)
        # the weights' sampler: what the C++ GeneratorIntegrator uses unless it is given its own
        self.num_steps = int(num_steps)
        self.noise_scale = float(noise_scale)
        self.core = core
        self.geometry = geometry
        self.aatype = pmap.aatype[None].clone()  # [1, N]
        self.residue_index = pmap.residue_index[None].clone()  # [1, N]
        self.chain_index = pmap.chain_index[None].clone()  # [1, N]
        self.num_atoms = int(num_atoms)
        self.num_residues = pmap.num_residues
        self.num_other_atoms = int(pmap.other_atoms.size)
        self.context_noise_t = float(core.context_noise_t)
        self.stride_min_ns = float(core.stride_min_ns)
        self.stride_max_ns = float(core.stride_max_ns)
        self.last_trans = torch.zeros(1, pmap.num_residues, 3)  # CA of the last context frame [1, N, 3]
        self.num_frames = 0
        self.core_device = "cpu"  # the geometry always runs on the CPU; only the core moves (set_core_device)
        self.bond_tree = torch.as_tensor(np.asarray(bond_tree, dtype=np.int64).reshape(-1, 2))  # [E, 2]
        self.atom_labels = list(atom_labels)

    def _check_positions(self, positions_nm: torch.Tensor) -> None:
        if positions_nm.dim() != 2 or positions_nm.shape[1] != 3 or positions_nm.shape[0] != self.num_atoms:
            raise ValueError("STAR-MD propagator: positions have shape " + str(positions_nm.shape)
                             + "; this model file was exported for a system of " + str(self.num_atoms)
                             + " atoms (shape [" + str(self.num_atoms) + ", 3])")

    @torch.jit.export
    def set_core_device(self, device: str) -> None:
        """Tell the module where the caller moved ``self.core`` (e.g. ``"cuda:0"``); inputs follow it."""
        self.core_device = device

    @torch.jit.export
    def start(self, capacity_frames: int) -> None:
        """Reset the rollout with a KV cache of ``capacity_frames`` frames."""
        dev = torch.device(self.core_device)
        self.core.start(self.aatype.to(dev), self.residue_index.to(dev), self.chain_index.to(dev), capacity_frames, None, None)
        self.num_frames = 0

    @torch.jit.export
    def coarse(self, positions_nm: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """positions ``[A, 3]`` float64 nm -> rots ``[N, 3, 3]``, trans ``[N, 3]``."""
        self._check_positions(positions_nm)
        return self.geometry.coarse(positions_nm.to(torch.float64))

    @torch.jit.export
    def append(self, rots: torch.Tensor, trans: torch.Tensor, log10_stride_ns: torch.Tensor) -> None:
        """Add a context frame (rots ``[N, 3, 3]``, trans ``[N, 3]``), noised to the core's context level."""
        dev = torch.device(self.core_device)
        self.core.append_frame(rots[None].to(dev), trans[None].to(dev), log10_stride_ns.to(dev), self.context_noise_t)
        self.last_trans = trans[None].cpu()
        self.num_frames += 1

    @torch.jit.export
    def sample(self, log10_stride_ns: torch.Tensor, num_steps: int, ode: bool, noise_scale: float
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next frame, superposed on the last context frame: rots ``[N, 3, 3]``, trans ``[N, 3]``,
        torsions ``[N, 7, 2]`` (not appended: the caller appends the structure it keeps)."""
        rots, trans, tors = self.core.sample_frame(log10_stride_ns.to(torch.device(self.core_device)), num_steps, ode, noise_scale,
                                                   self.time_spacing, self.noise_switch_t)
        rots, trans = self.geometry.align(rots.cpu(), trans.cpu(), self.last_trans)
        return rots[0], trans[0], tors[0].cpu()

    @torch.jit.export
    def rebuild(self, positions_nm: torch.Tensor, rots: torch.Tensor, trans: torch.Tensor, torsions: torch.Tensor
                ) -> torch.Tensor:
        """All-atom positions ``[A, 3]`` float64 after moving the protein to the given frame."""
        self._check_positions(positions_nm)
        return self.geometry.rebuild(positions_nm.to(torch.float64), rots.float(), trans.float(), torsions.float())

    @torch.jit.export
    def rebuild_periodic(self, positions_nm: torch.Tensor, box_nm: torch.Tensor, rots: torch.Tensor, trans: torch.Tensor,
                         torsions: torch.Tensor) -> torch.Tensor:
        """:meth:`rebuild` for a system in a rectangular periodic box ``[3, 3]`` (rows, nm)."""
        self._check_positions(positions_nm)
        return self.geometry.rebuild_periodic(positions_nm.to(torch.float64), box_nm.to(torch.float64), rots.float(),
                                              trans.float(), torsions.float())

    def forward(self, positions_nm: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.coarse(positions_nm)


class _OneNoiseSystemPropagator(SystemPropagator):
    """:class:`SystemPropagator` around a core exported before ``sample_frame`` took a noise
    switch: one noise scale at every reverse step."""

    @torch.jit.export
    def sample(self, log10_stride_ns: torch.Tensor, num_steps: int, ode: bool, noise_scale: float
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rots, trans, tors = self.core.sample_frame(log10_stride_ns.to(torch.device(self.core_device)), num_steps, ode, noise_scale,
                                                   self.time_spacing)
        rots, trans = self.geometry.align(rots.cpu(), trans.cpu(), self.last_trans)
        return rots[0], trans[0], tors[0].cpu()


class _EvenTimesSystemPropagator(SystemPropagator):
    """:class:`SystemPropagator` around a core exported before ``sample_frame`` took a time
    spacing: its reverse-diffusion times are evenly spaced."""

    @torch.jit.export
    def sample(self, log10_stride_ns: torch.Tensor, num_steps: int, ode: bool, noise_scale: float
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rots, trans, tors = self.core.sample_frame(log10_stride_ns.to(torch.device(self.core_device)), num_steps, ode, noise_scale)
        rots, trans = self.geometry.align(rots.cpu(), trans.cpu(), self.last_trans)
        return rots[0], trans[0], tors[0].cpu()


def _is_torchscript_archive(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(name.split("/", 1)[-1].startswith("code/") for name in z.namelist())


def load_scripted_core(model) -> Tuple[torch.jit.ScriptModule, dict]:
    """A scripted core and its config from ``model``: a file written by ``starmd export``, a
    shipped name (``"default"``), a checkpoint path, a :class:`StarMDCore` or a scripted core."""
    from openmm_starmd.model.core import StarMDCore
    from openmm_starmd.model.export import script_core

    if isinstance(model, torch.jit.ScriptModule):
        return model, {}
    if isinstance(model, StarMDCore):
        return script_core(model), {}
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model: expected 'default', a checkpoint or exported-core path, or a StarMDCore; got {type(model).__name__}")
    name = os.fspath(model)
    if os.path.isfile(name) and _is_torchscript_archive(name):
        extra = {"config.json": ""}
        core = torch.jit.load(name, map_location="cpu", _extra_files=extra)
        return core, json.loads(extra["config.json"] or "{}")
    from openmm_starmd.model.checkpoint import load_model, read_checkpoint, resolve_model_path

    core = load_model(name, device="cpu")
    return script_core(core), read_checkpoint(resolve_model_path(name)[0])["config"]


def export_propagator(topology, positions, path, model="default", time_spacing=None, num_steps=None, noise_scale=None,
                      noise_switch_t=None, context_window=None, context_sink=None) -> str:
    """Write the system-bound propagator file the C++ ``GeneratorIntegrator`` runs; returns the path.

    Args:
        topology: the ``openmm.app.Topology`` of the system the integrator will run.
        positions: ``[A, 3]`` positions (``openmm.unit`` quantity or nm numbers) of a structure of
            it; used to trace the geometry (and to find chain links when the topology has no bonds).
            Refused (ValueError) when a coordinate is NaN or infinite (naming the atoms) or a Cα has
            the D configuration under an L name; a chain gap warns (``ChainGapWarning``).
        path: output file.
        model: ``"default"``, a checkpoint path, a file written by ``starmd export``, or a core.
        time_spacing: power of the reverse-diffusion time spacing the file samples with
            (``GeneratorOptions.time_spacing``); None: the one the weights record (their card),
            else 1 (evenly spaced).
        num_steps, noise_scale: the sampler the C++ ``GeneratorIntegrator`` uses when it is not
            given one (its ``numDiffusionSteps`` 0 and ``noiseScale`` -1, the defaults); None: the
            weights' card, else 50 steps and noise 0.5 (as ``GeneratorOptions``).
        noise_switch_t: diffusion time above which the file's reverse steps take the exact SDE
            (``GeneratorOptions.noise_switch_t``); None: the weights' card, else 1 (the noise
            scale at every step).
        context_window: frames each generated frame attends to, itself included
            (``GeneratorOptions.context_window``; 0: the whole history); None: the weights' card,
            else 0.
        context_sink: with a window, the first frames every generated frame attends to as well
            (``GeneratorOptions.context_sink``); None: the weights' card, else 0.
    """
    from openmm import unit

    if unit.is_quantity(positions):
        positions = positions.value_in_unit(unit.nanometer)
    pos = np.asarray(positions, dtype=np.float64)
    num_atoms = topology.getNumAtoms()
    if pos.shape != (num_atoms, 3):
        raise ValueError(f"positions: expected shape ({num_atoms}, 3) for a topology of {num_atoms} atoms, got {pos.shape}")
    check_finite_positions(topology, pos, "positions")
    box = topology.getPeriodicBoxVectors()
    if box is not None:  # a protein wrapped across the box is made whole, as the Generator and the kernel do
        pos = make_whole(pos, np.asarray(box.value_in_unit(unit.nanometer), dtype=np.float64), protein_bond_tree(topology))
    pmap = map_topology(topology, pos)
    check_chirality(pmap, pos)
    warn_chain_gaps(pmap, pos)
    core, config = load_scripted_core(model)
    card_steps, card_noise, card_spacing, card_switch, card_window, card_sink = _card_sampler(model)
    context_window = card_window if context_window is None else context_window
    if isinstance(context_window, bool) or int(context_window) != context_window or context_window < 0 or context_window == 1:
        raise ValueError(f"context_window: expected 0 (whole history) or a whole number >= 2, got {context_window}")
    if int(context_window) != int(getattr(core, "window_frames", 0)):
        if core is model:  # a scripted core the caller handed in keeps its own window
            core = copy.deepcopy(core)
        core.set_window(int(context_window))
    context_sink = card_sink if context_sink is None else context_sink
    if isinstance(context_sink, bool) or int(context_sink) != context_sink or context_sink < 0:
        raise ValueError(f"context_sink: expected a whole number of frames >= 0, got {context_sink}")
    if int(context_sink) != int(getattr(core, "sink_frames", 0)):
        if not hasattr(core, "set_sink"):
            raise ValueError("context_sink: this core was exported by an earlier version and has no sink frames")
        if core is model:
            core = copy.deepcopy(core)
        core.set_sink(int(context_sink))
    time_spacing = card_spacing if time_spacing is None else time_spacing
    noise_switch_t = card_switch if noise_switch_t is None else noise_switch_t
    num_steps = card_steps if num_steps is None else num_steps
    noise_scale = card_noise if noise_scale is None else noise_scale
    if not 0 < float(time_spacing) < float("inf"):
        raise ValueError(f"time_spacing: expected a number > 0, got {time_spacing}")
    if int(num_steps) != num_steps or int(num_steps) < 1:
        raise ValueError(f"num_steps: expected a whole number >= 1, got {num_steps}")
    if not 0 <= float(noise_scale) < float("inf"):
        raise ValueError(f"noise_scale: expected a number >= 0, got {noise_scale}")
    noise_switch_t = check_noise_switch(core, noise_switch_t)
    if "noise_switch_t" in sample_frame_arguments(core):
        propagator_cls = SystemPropagator
    else:
        propagator_cls = _OneNoiseSystemPropagator if check_time_spacing(core, time_spacing) else _EvenTimesSystemPropagator
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TorchScript.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*torch.jit.*", category=DeprecationWarning)
        residue_of_atom = np.array([a.residue.index for a in topology.atoms()], dtype=np.int64)
        labels = [atom_label(a) for a in topology.atoms()]
        scripted = torch.jit.script(propagator_cls(core, trace_geometry(pmap, pos, residue_of_atom), pmap, num_atoms,
                                                   protein_bond_tree(topology), labels, float(time_spacing), int(num_steps),
                                                   float(noise_scale), noise_switch_t))
    system = {"format": FORMAT, "version": FORMAT_VERSION, "num_atoms": num_atoms, "num_residues": pmap.num_residues,
              "num_other_atoms": int(pmap.other_atoms.size), "labels": list(pmap.labels), "time_spacing": float(time_spacing),
              "noise_switch_t": noise_switch_t, "num_steps": int(num_steps), "noise_scale": float(noise_scale),
              "context_window": int(context_window), "context_sink": int(context_sink)}
    scripted.save(os.fspath(path), _extra_files={"config.json": json.dumps(config, indent=1),
                                                 "system.json": json.dumps(system, indent=1)})
    return os.fspath(path)


def _card_sampler(model) -> Tuple[int, float, float, float, int, int]:
    """(num_steps, noise_scale, time_spacing, noise_switch_t, context_window, context_sink) recorded with a shipped
    name or checkpoint path; what the card leaves out, and anything else, gets ``GeneratorOptions``'
    fallbacks."""
    from openmm_starmd.model.checkpoint import stride_card
    from openmm_starmd.openmm.generator import GeneratorOptions

    card = None
    if isinstance(model, (str, os.PathLike)) and not (os.path.isfile(os.fspath(model)) and _is_torchscript_archive(os.fspath(model))):
        card = stride_card(model)
    options = GeneratorOptions().with_sampler_of(card)
    return (options.num_steps, options.noise_scale, options.time_spacing, options.noise_switch_t, options.context_window,
            options.context_sink)


def log10_stride_tensor(stride_ns: float) -> torch.Tensor:
    """``[1]`` float32 log10 of the stride, as :class:`~openmm_starmd.model.rollout.Rollout` builds it."""
    return torch.full([1], math.log10(stride_ns))


__all__ = ["SystemPropagator", "export_propagator", "load_scripted_core", "trace_geometry", "log10_stride_tensor"]
