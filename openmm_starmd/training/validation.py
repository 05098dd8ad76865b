"""Validation on proteins the model never trained on: raw rollouts scored against their MD.

    python -m openmm_starmd.training.validation --check md_data            # the split is unrelated by sequence
    python -m openmm_starmd.training.validation --model CKPT --data md_data --jumps 100 --workers 2 \
        --out report.json --plot validity.png

The split is a text file (default ``md_data/validation_split.txt``): one system name per line,
``#`` starts a comment. ``starmd train --holdout-file`` leaves these systems out of training
and ``starmd train --validate-every`` scores them during training.

For every validation system and stride, two rollouts start from the pair of MD frames that lie
farthest apart (Cα RMSD, superposed); each runs ``jumps`` raw jumps (no gate, no resampling,
no relaxation) with the Generator's sampler settings. ``--rollouts-per-start R`` runs R
independent rollouts from each of the two frames as the replicas of one batch: on a CPU, R = 4
took 1.5× the time of R = 1 for Trp-cage (2026-12-05, one thread), and a system's validity then
rests on 2R rollouts instead of 2. Reported per system and stride:

* ``ca_valid``: fraction of generated frames that pass the Cα validity check;
* ``rmsd_ratio``: mean per-jump Cα RMSD of the rollouts over the MD's mean Cα RMSD between
  frames the same lag apart (None when the MD is shorter than the lag);
* ``rmsd_ratio_equilibrium``: the same over MD at equilibrium: each replica without its
  relaxation from the start structure (a peptide built extended collapses over its first
  0.1–1 ns, and at long lags that collapse dominates the plain ratio's denominator; None when
  what remains is shorter than the lag). ``--add-equilibrium REPORT`` adds it to an older report
  from the MD under ``--data``, without new rollouts;
* ``attractor``: how far apart the two rollouts stay — the mean Cα RMSD between them over the
  last quarter of the jumps, over the MD's ensemble spread (mean Cα RMSD between MD frames).
  MD trajectories started that far apart stay about that far apart on average; a model that
  forgets its context collapses both rollouts onto one structure (ratio near 0);
* ``invalid_by``: why frames fail, by a chain break, a clash or both, and the clashing pairs
  counted as local (|i - j| <= 3) or long-range;
* ``compactness``: the radius of gyration (Cα) of the generated frames against the MD's: the
  rollouts' mean over the last quarter of the jumps over the MD mean (``rg_ratio``; below 1: the
  rollouts drift to more compact states than MD visits), and the fraction of generated frames
  more compact than the MD's 1st percentile (``below_md_p1``).

A 100-jump run takes an hour or more on a CPU. With ``--out REPORT.json`` every finished system ×
stride cell is also appended to ``REPORT.json.partial.jsonl``; the same command run again after a
stop scores only the cells missing there (same settings and the same weights, by SHA-256) and
removes the file once the report is written. Each rollout is seeded by ``--seed`` alone, so the
resumed report equals an uninterrupted one.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from openmm_starmd.data.dataset import FramesTrajectory, load_or_convert, radius_of_gyration, relaxation_frames, trimmed
from openmm_starmd.data.identity import identity
from openmm_starmd.data.readers import find_sources
from openmm_starmd.evaluation.validity import CaValidityConfig, ca_clash_break_rates, ca_valid
from openmm_starmd.geometry import residue_constants
from openmm_starmd.geometry.superpose import rmsd
from openmm_starmd.units import ANGSTROM_PER_NM, PS_PER_NS

MAX_IDENTITY = 0.30  # a validation system must be below this identity to every training system
FIRST_JUMPS = 20  # summaries of longer rollouts also give the validity over their first 20 jumps
GENERATOR_NUM_STEPS = 50  # the Generator's sampler for weights that record none (SDE, noise scale 0.5)
GENERATOR_NOISE_SCALE = 0.5
_PAIR_SUBSAMPLE = 80  # frames considered when looking for the farthest-apart start pair


def read_split(path) -> tuple[str, ...]:
    """System names of a split file (one per line, ``#`` starts a comment); () for None."""
    if path is None:
        return ()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"split file {str(path)!r} not found")
    names = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return tuple(n for n in names if n)


def _sequence(source) -> str:
    """One-letter sequence of a trajectory source's protein (X for unknown residues)."""
    return "".join(residue_constants.RESTYPE_3TO1.get(r.name, "X") for r in source.topology().residues if r.is_protein)


def _systems(data, names: Optional[Sequence[str]] = None) -> dict[str, list[FramesTrajectory]]:
    """Trajectories under ``data`` grouped by system name (all replicas), optionally only ``names``."""
    out: dict[str, list[FramesTrajectory]] = {}
    for source in find_sources(data):
        if names is not None and source.name not in names:
            continue
        out.setdefault(source.name, []).append(load_or_convert(source, None))
    return out


def check_split(data, split) -> list[dict]:
    """Highest sequence identity of every validation system to any training system under ``data``
    (every system not in the split). Raises ValueError when a split system has no data."""
    names = read_split(split)
    sequences = {}
    for source in find_sources(data):
        if source.name not in sequences:
            sequences[source.name] = _sequence(source)
    missing = [n for n in names if n not in sequences]
    if missing:
        raise ValueError(f"validation systems without MD under {str(data)!r}: {missing}")
    training = [n for n in sequences if n not in names]
    rows = []
    for name in names:
        scores = [(identity(sequences[name], sequences[t]), t) for t in training]
        best, nearest = max(scores) if scores else (0.0, None)
        rows.append({"system": name, "residues": len(sequences[name]), "max_identity": round(best, 3),
                     "nearest_training_system": nearest, "unrelated": best < MAX_IDENTITY})
    return rows


def _pairwise_rmsd(ca: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame indices ``[S]`` of an even subsample of ``ca [F, N, 3]`` (nm) and their Cα RMSDs ``[S, S]`` (nm)."""
    idx = torch.linspace(0, ca.shape[0] - 1, min(_PAIR_SUBSAMPLE, ca.shape[0])).round().long().unique()
    sub = ca[idx].double()
    S = sub.shape[0]
    return idx, rmsd(sub[:, None].expand(S, S, *sub.shape[1:]), sub[None].expand(S, S, *sub.shape[1:]))


def _far_pair(ca: torch.Tensor) -> tuple[int, int, float]:
    """The two frames of ``ca [F, N, 3]`` (nm) farthest apart (Cα RMSD, among an even subsample) and that RMSD in nm."""
    idx, d = _pairwise_rmsd(ca)
    k = int(torch.argmax(d))
    S = idx.shape[0]
    return int(idx[k // S]), int(idx[k % S]), float(d.flatten()[k])


def _md_lag_rmsd_nm(trajectories: list[FramesTrajectory], stride_ns: float, equilibrium: bool = False) -> Optional[float]:
    """Mean Cα RMSD between MD frames ``stride_ns`` apart (nm), over all replicas; None when no
    replica is that long. ``equilibrium``: each replica first loses its relaxation from the start
    structure (:func:`~openmm_starmd.data.dataset.relaxation_frames`), so that a peptide built
    extended and collapsing over its first nanosecond does not count as motion at equilibrium."""
    values = []
    for f in trajectories:
        if equilibrium:
            f = trimmed(f, relaxation_frames(f.trans))
        lag = stride_ns * PS_PER_NS / f.frame_interval_ps
        k = int(round(lag))
        if abs(lag - k) > 1e-6 or k < 1 or f.num_frames <= k:
            continue
        ca = torch.from_numpy(f.trans).double()
        values.append(float(rmsd(ca[k:], ca[:-k]).mean()))
    return float(np.mean(values)) if values else None


def _equilibrium_columns(trajectories: list[FramesTrajectory], stride_ns: float, model_jump_nm: float) -> dict:
    """The report's equilibrium columns of one system and stride: each replica's relaxation frames,
    the MD's lag RMSD without them (Å) and the rollouts' mean per-jump RMSD ``model_jump_nm`` over it."""
    md_lag_eq = _md_lag_rmsd_nm(trajectories, stride_ns, equilibrium=True)
    return {"md_relaxation_frames": [relaxation_frames(f.trans) for f in trajectories],
            "md_lag_rmsd_equilibrium_angstrom": None if md_lag_eq is None else md_lag_eq * ANGSTROM_PER_NM,
            "rmsd_ratio_equilibrium": None if md_lag_eq is None else model_jump_nm / md_lag_eq}


def _md_spread_nm(ca: torch.Tensor) -> float:
    """Mean Cα RMSD between MD frames (an even subsample of ``ca [F, N, 3]``, nm)."""
    idx, d = _pairwise_rmsd(ca)
    S = idx.shape[0]
    return float(d.sum() / max(S * (S - 1), 1))


def far_pair_rollouts(core, trajectories: list[FramesTrajectory], stride_ns: float, jumps: int, num_steps: int,
                      noise_scale: float, seed: int, context_window: int = 0, time_spacing: float = 1.0,
                      noise_switch_t: float = 1.0, context_noise_t: Optional[float] = None, context_sink: int = 0,
                      rollouts_per_start: int = 1, ode: bool = False,
                      ode_noise: float = 0.0) -> tuple[list[list[torch.Tensor]], tuple[int, int, float]]:
    """Raw rollouts (gate open) of one system from its farthest-apart MD frames ``a``, ``b``:
    ``rollouts_per_start`` independent ones from each, generated as the replicas of one batch
    (seeds ``seed`` for ``a``'s batch, ``seed + 1`` for ``b``'s). Returns, per start, the Cα
    positions ``[jumps + 1, N, 3]`` nm of each of its rollouts (float64, the MD start first), and
    ``(a, b, their Cα RMSD in nm)``. One rollout per start is the historical protocol; a batch of
    R draws its noise for all R replicas at once, so its first replica is not the R = 1 rollout.
    ``ode``: the probability-flow ODE at every reverse step (``noise_scale`` is then unused), with
    noise ``ode_noise`` and the drift that keeps the marginals (0: the ODE itself)."""
    from openmm_starmd.geometry.so3 import quat_to_rotmat
    from openmm_starmd.model.rollout import Rollout

    replicas = int(rollouts_per_start)
    if replicas < 1:
        raise ValueError(f"rollouts_per_start must be >= 1, got {rollouts_per_start}")
    first = trajectories[0]
    quats = np.concatenate([f.quats for f in trajectories])
    trans = np.concatenate([f.trans for f in trajectories])
    ca_md = torch.from_numpy(trans)
    a, b, start_sep = _far_pair(ca_md)
    generated = []
    for k, frame in enumerate((a, b)):
        rollout = Rollout(core, torch.from_numpy(first.aatype), torch.from_numpy(first.residue_index), stride_ns,
                          replicas=replicas, capacity_frames=jumps + 2, seed=seed + k,
                          num_steps=num_steps, noise_scale=noise_scale, ode=ode, ode_noise=ode_noise,
                          time_spacing=time_spacing, noise_switch_t=noise_switch_t,
                          chain_index=torch.from_numpy(first.chain_index), context_window=context_window,
                          context_noise_t=context_noise_t, context_sink=context_sink)
        rollout.add_context(quat_to_rotmat(torch.from_numpy(quats[frame])), torch.from_numpy(trans[frame]))
        out = rollout.run(jumps)
        generated.append([torch.cat([ca_md[frame:frame + 1].double(), out.trans[r].double()])  # [J+1, N, 3]
                          for r in range(replicas)])
    return generated, (a, b, start_sep)


def compactness(generated_nm: list[np.ndarray], md_nm: np.ndarray) -> dict:
    """Radius of gyration of rollouts (each ``[J, N, 3]`` nm, generated frames only) against MD
    frames ``[F, N, 3]``: MD mean and 1st percentile, the rollouts' mean over their last quarter,
    ``rg_ratio`` (that mean over the MD mean) and ``below_md_p1`` (the fraction of all generated
    frames with a radius of gyration below the MD's 1st percentile). Lengths in Å."""
    rg_md = radius_of_gyration(md_nm) * ANGSTROM_PER_NM
    rg_gen = [radius_of_gyration(g) * ANGSTROM_PER_NM for g in generated_nm]
    p1 = float(np.percentile(rg_md, 1))
    last = float(np.mean([r[-max(1, len(r) // 4):].mean() for r in rg_gen]))
    return {"md_rg_angstrom": float(rg_md.mean()), "md_rg_p1_angstrom": p1, "rg_last_quarter_angstrom": last,
            "rg_ratio": last / float(rg_md.mean()), "below_md_p1": float(np.mean(np.concatenate(rg_gen) < p1))}


def failure_causes(ca_nm: np.ndarray) -> dict:
    """Why generated frames ``[F, N, 3]`` (nm, one chain) fail the Cα check: the fraction of frames
    failing by a break only, a clash only, or both; and the clashing pairs (< 3.0 Å) counted by
    sequence separation, local (|i - j| <= 3) or long-range (> 3: termini or loops passing through)."""
    config = CaValidityConfig()
    clash_rate, break_rate = ca_clash_break_rates(ca_nm, None, config)
    clash_bad, break_bad = clash_rate > config.max_clash_rate, break_rate > config.max_break_rate
    N = ca_nm.shape[1]
    iu, ju = np.triu_indices(N, k=1)
    d = np.linalg.norm(ca_nm[:, iu] - ca_nm[:, ju], axis=-1)  # [F, pairs]
    close = d < config.clash_distance_nm
    local = (ju - iu) <= 3
    F = max(len(ca_nm), 1)
    return {"break_only": float((break_bad & ~clash_bad).sum() / F), "clash_only": float((clash_bad & ~break_bad).sum() / F),
            "both": float((clash_bad & break_bad).sum() / F),
            "clash_pairs_local": int(close[:, local].sum()), "clash_pairs_long_range": int(close[:, ~local].sum())}


def validate_system(core, trajectories: list[FramesTrajectory], stride_ns: float, jumps: int, num_steps: int,
                    noise_scale: float, seed: int, context_window: int = 0, time_spacing: float = 1.0,
                    noise_switch_t: float = 1.0, context_noise_t: Optional[float] = None, context_sink: int = 0,
                    rollouts_per_start: int = 1, ode: bool = False, ode_noise: float = 0.0) -> dict:
    """Raw rollouts of one system from its farthest-apart MD frames, ``rollouts_per_start`` from
    each, scored (see the module doc). The attractor pairs the i-th rollout from one start with
    the i-th from the other and averages their final separations."""
    first = trajectories[0]
    ca_md = torch.from_numpy(np.concatenate([f.trans for f in trajectories]))
    by_start, (a, b, start_sep) = far_pair_rollouts(core, trajectories, stride_ns, jumps, num_steps, noise_scale, seed,
                                                    context_window, time_spacing, noise_switch_t, context_noise_t,
                                                    context_sink, rollouts_per_start, ode, ode_noise)
    generated = [g for rollouts in by_start for g in rollouts]  # a's rollouts, then b's
    valid_by_rollout = np.stack([ca_valid(g[1:].numpy()) for g in generated])  # [rollouts, jumps]
    valid = valid_by_rollout.ravel()
    per_jump = torch.cat([rmsd(g[1:], g[:-1]) for g in generated])
    md_lag = _md_lag_rmsd_nm(trajectories, stride_ns)
    tail = max(1, jumps // 4)
    end_sep = float(np.mean([float(rmsd(ga[-tail:], gb[-tail:]).mean()) for ga, gb in zip(*by_start)]))
    spread = _md_spread_nm(ca_md)
    model_jump = float(per_jump.mean())
    return {
        "residues": int(first.aatype.shape[0]), "stride_ns": stride_ns, "jumps": jumps, "starts": [a, b],
        "rollouts": len(generated),
        "ca_valid": float(valid.mean()),
        "ca_valid_per_jump": [float(v) for v in valid_by_rollout.mean(0)],  # jump k: fraction of all rollouts
        "ca_valid_per_rollout": [float(v) for v in valid_by_rollout.mean(1)],  # a's rollouts first
        "per_jump_rmsd_angstrom": model_jump * ANGSTROM_PER_NM,
        "md_lag_rmsd_angstrom": None if md_lag is None else md_lag * ANGSTROM_PER_NM,
        "rmsd_ratio": None if md_lag is None else model_jump / md_lag,
        **_equilibrium_columns(trajectories, stride_ns, model_jump),
        "start_separation_angstrom": start_sep * ANGSTROM_PER_NM,
        "end_separation_angstrom": end_sep * ANGSTROM_PER_NM,
        "md_spread_angstrom": spread * ANGSTROM_PER_NM,
        "attractor": end_sep / spread if spread > 0 else None,
        "finite": bool(all(torch.isfinite(g).all() for g in generated)),
        "invalid_by": failure_causes(torch.cat([g[1:] for g in generated]).numpy()),
        "compactness": compactness([g[1:].numpy() for g in generated], ca_md.double().numpy()),
    }


def summarise(systems: list[dict], strides_ns: Sequence[float]) -> dict:
    """Per stride: mean Cα validity (and over the first 20 jumps of longer rollouts), median RMSD
    ratio, mean attractor ratio over the systems, why frames failed (mean fractions of frames,
    summed clash-pair counts), and the compactness drift (median Rg ratio, mean fraction of
    frames more compact than MD's 1st percentile)."""
    out = {}
    for s in strides_ns:
        rows = [r for r in systems if math.isclose(r["stride_ns"], s)]
        ratios = [r["rmsd_ratio"] for r in rows if r["rmsd_ratio"] is not None]
        ratios_eq = [r["rmsd_ratio_equilibrium"] for r in rows if r.get("rmsd_ratio_equilibrium") is not None]
        attractors = [r["attractor"] for r in rows if r["attractor"] is not None]
        first = [np.mean(r["ca_valid_per_jump"][:FIRST_JUMPS]) for r in rows if len(r.get("ca_valid_per_jump", ())) > FIRST_JUMPS]
        out[f"{s:g}ns"] = {"ca_valid": float(np.mean([r["ca_valid"] for r in rows])) if rows else None,
                           f"ca_valid_first_{FIRST_JUMPS}": float(np.mean(first)) if first else None,
                           "rmsd_ratio_median": float(np.median(ratios)) if ratios else None,
                           "rmsd_ratio_systems": len(ratios),
                           "rmsd_ratio_equilibrium_median": float(np.median(ratios_eq)) if ratios_eq else None,
                           "rmsd_ratio_equilibrium_systems": len(ratios_eq),
                           "attractor_mean": float(np.mean(attractors)) if attractors else None}
        compact = [r["compactness"] for r in rows if "compactness" in r]
        if compact:
            out[f"{s:g}ns"]["rg_ratio_median"] = float(np.median([c["rg_ratio"] for c in compact]))
            out[f"{s:g}ns"]["below_md_rg_p1_mean"] = float(np.mean([c["below_md_p1"] for c in compact]))
        causes = [r["invalid_by"] for r in rows if "invalid_by" in r]
        if causes:
            out[f"{s:g}ns"]["invalid_by"] = {k: float(np.mean([c[k] for c in causes])) if k in ("break_only", "clash_only", "both")
                                             else int(sum(c[k] for c in causes)) for k in causes[0]}
    return out


def score_core(core, data, split, strides_ns: Sequence[float] = (0.1, 1.25), jumps: int = 20,
               num_steps: int = GENERATOR_NUM_STEPS, noise_scale: float = GENERATOR_NOISE_SCALE, seed: int = 0,
               systems: Optional[dict] = None, context_window: int = 0, only: Optional[Sequence[str]] = None,
               verbose: bool = False, time_spacing: float = 1.0, noise_switch_t: float = 1.0,
               context_noise_t: Optional[float] = None, resume_file=None, resume_tag: str = "",
               context_sink: int = 0, rollouts_per_start: int = 1, ode: bool = False, ode_noise: float = 0.0) -> dict:
    """Score a loaded core on every validation system at every stride (see the module doc);
    ``verbose`` prints one line per system and stride to stderr as it is done.

    ``resume_file``: a JSON-lines file to which every finished (system, stride) cell is appended
    at once; cells already there with the same settings and ``resume_tag`` (the weights' identity)
    are taken from it instead of being scored again. Each rollout is seeded by ``seed`` alone, so a
    resumed report equals an uninterrupted one."""
    names = read_split(split)
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"not validation systems of {str(split)!r}: {unknown}")
        names = tuple(n for n in names if n in only)
    systems = systems if systems is not None else _systems(data, names)
    missing = [n for n in names if n not in systems]
    if missing:
        raise ValueError(f"validation systems without MD under {str(data)!r}: {missing}")
    settings = {"jumps": jumps, "num_steps": num_steps, "noise_scale": noise_scale, "time_spacing": time_spacing,
                "noise_switch_t": noise_switch_t,
                "seed": seed,
                "strides_ns": list(strides_ns), "sampler": "ode" if ode else "sde", "gate": "open (raw samples)",
                "context_window": context_window}
    if ode and ode_noise:
        settings["ode_noise"] = float(ode_noise)
    if context_noise_t is not None:
        settings["context_noise_t"] = float(context_noise_t)
    if context_sink:
        settings["context_sink"] = int(context_sink)
    if int(rollouts_per_start) != 1:
        settings["rollouts_per_start"] = int(rollouts_per_start)
    run = {"settings": settings, "weights": resume_tag}
    done = _finished_cells(resume_file, run)
    rows = []
    for name in names:
        for s in strides_ns:
            start = time.monotonic()
            resumed = done.get((name, f"{s:g}"))
            row = resumed
            if row is None:
                row = validate_system(core, systems[name], s, jumps, num_steps, noise_scale, seed, context_window,
                                      time_spacing, noise_switch_t, context_noise_t, context_sink,
                                      rollouts_per_start, ode, ode_noise)
                row["system"] = name
                if resume_file is not None:
                    _append_cell(resume_file, run, row)
            rows.append(row)
            if verbose:
                ratio = "—" if row["rmsd_ratio"] is None else f"{row['rmsd_ratio']:.2f}"
                ratio_eq = "—" if row.get("rmsd_ratio_equilibrium") is None else f"{row['rmsd_ratio_equilibrium']:.2f}"
                took = "from the resume file" if resumed is not None else f"{time.monotonic() - start:.0f} s"
                print(f"{name} at {s:g} ns: {100 * row['ca_valid']:.0f} % Cα-valid over {jumps} jumps x {row.get('rollouts', 2)}, "
                      f"RMSD/MD {ratio}, at equilibrium {ratio_eq} ({took})", file=sys.stderr, flush=True)
    return {"systems": rows, "summary": summarise(rows, strides_ns), "settings": settings}


def _finished_cells(resume_file, run: dict) -> dict:
    """``{(system, f"{stride:g}"): row}`` of the cells in ``resume_file`` scored with ``run``'s
    settings and weights (a line cut short by a kill is skipped)."""
    if resume_file is None or not Path(resume_file).is_file():
        return {}
    done = {}
    for line in Path(resume_file).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("run") == run:
            row = record["row"]
            done[(row["system"], f"{row['stride_ns']:g}")] = row
    return done


def _append_cell(resume_file, run: dict, row: dict) -> None:
    """One line per finished cell, in one ``write`` to a file opened for appending (processes of
    ``--workers`` share the file)."""
    line = (json.dumps({"run": run, "row": row}) + "\n").encode()
    fd = os.open(resume_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def weights_identity(checkpoint) -> str:
    """SHA-256 of the weights file a model name or path loads (what ``resume_tag`` records)."""
    from openmm_starmd.model.checkpoint import resolve_model_path, sha256_of

    return sha256_of(resolve_model_path(checkpoint)[0])


def score_checkpoint(checkpoint, data, split, **options) -> dict:
    """:func:`score_core` of a checkpoint's EMA weights (eager core)."""
    from openmm_starmd.model.checkpoint import load_model

    start = time.monotonic()
    core = load_model(str(checkpoint))  # eager: a TorchScript core restarted for the second rollout can go wrong
    if options.get("resume_file") is not None:
        options = {**options, "resume_tag": weights_identity(checkpoint)}
    report = score_core(core, data, split, **options)
    report["checkpoint"] = str(checkpoint)
    report["wall_s"] = round(time.monotonic() - start, 1)
    return report


def _fmt(x, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def ablation_table(results: dict, args) -> str:
    """Markdown table of the ablation rows (one per configuration)."""
    strides = [f"{s:g}ns" for s in args.strides]
    head = ["row", "change", "steps"] + [f"Cα-valid {s}" for s in strides] + [f"RMSD ratio {s}" for s in strides] + \
        [f"attractor {s}" for s in strides]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results["rows"].values():
        sm = r["summary"]
        cells = [r["row"], r["what"], str(r["steps"])]
        cells += [_fmt(None if sm[s]["ca_valid"] is None else 100 * sm[s]["ca_valid"], ".0f") + " %" for s in strides]
        cells += [_fmt(sm[s]["rmsd_ratio_median"], ".2f") for s in strides]
        cells += [_fmt(sm[s]["attractor_mean"], ".2f") for s in strides]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_equilibrium_ratios(report: dict, systems: dict[str, list[FramesTrajectory]]) -> dict:
    """A copy of ``report`` with the equilibrium columns (``md_relaxation_frames``,
    ``md_lag_rmsd_equilibrium_angstrom``, ``rmsd_ratio_equilibrium``) of every row computed from
    the MD trajectories ``systems`` (name -> replicas) and the summary remade: the rollouts'
    per-jump RMSD is kept as it was, so no rollout is run again."""
    rows = []
    for row in report["systems"]:
        if row["system"] not in systems:
            raise ValueError(f"no MD for {row['system']!r}: cannot recompute its MD reference")
        model_jump = row["per_jump_rmsd_angstrom"] / ANGSTROM_PER_NM
        rows.append({**row, **_equilibrium_columns(systems[row["system"]], row["stride_ns"], model_jump)})
    return {**report, "systems": rows, "summary": summarise(rows, report["settings"]["strides_ns"])}


def merge_reports(reports: Sequence[dict]) -> dict:
    """One report from reports of disjoint sets of systems scored with the same settings (the
    per-process parts of ``--workers``), in the split's order of the first report's rows."""
    if not reports:
        raise ValueError("merge_reports: no reports")
    settings = reports[0]["settings"]
    for r in reports[1:]:
        if r["settings"] != settings:
            raise ValueError(f"merge_reports: settings differ ({r['settings']} against {settings})")
    rows = [row for r in reports for row in r["systems"]]
    seen = [(row["system"], row["stride_ns"]) for row in rows]
    if len(set(seen)) != len(seen):
        raise ValueError("merge_reports: a system was scored in more than one report")
    merged = {"systems": rows, "summary": summarise(rows, settings["strides_ns"]), "settings": settings}
    for key in ("checkpoint",):
        if key in reports[0]:
            merged[key] = reports[0][key]
    if all("wall_s" in r for r in reports):
        merged["wall_s"] = max(r["wall_s"] for r in reports)
    return merged


def exit_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Pool initializer: the worker exits when the process that started it is gone (a killed
    ``--workers`` run would otherwise leave its workers computing)."""
    import threading

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _score_part(args: tuple) -> dict:
    checkpoint, data, split, threads, options = args
    torch.set_num_threads(threads)
    return score_checkpoint(checkpoint, data, split, **options)


def score_in_processes(checkpoint, data, split, workers: int, threads: int = 1, **options) -> dict:
    """:func:`score_checkpoint` with the systems dealt round-robin over ``workers`` processes
    (largest first, so that the parts take about the same time), merged into one report."""
    names = list(options.pop("only", None) or read_split(split))
    if workers <= 1 or len(names) <= 1:
        return score_checkpoint(checkpoint, data, split, only=names, **options)
    systems = _systems(data, names)
    missing = [n for n in names if n not in systems]
    if missing:
        raise ValueError(f"validation systems without MD under {str(data)!r}: {missing}")
    by_size = sorted(names, key=lambda n: -systems[n][0].aatype.shape[0])
    parts = [by_size[k::workers] for k in range(min(workers, len(names)))]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(len(parts), mp_context=multiprocessing.get_context("spawn"),
                             initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        reports = list(pool.map(_score_part, [(str(checkpoint), str(data), str(split), threads, {**options, "only": part})
                                              for part in parts]))
    merged = merge_reports(reports)
    order = {n: k for k, n in enumerate(names)}
    merged["systems"].sort(key=lambda r: (order[r["system"]], r["stride_ns"]))
    return merged


def _sampler_words(settings: dict) -> str:
    if settings.get("sampler") == "ode":
        words = f"{settings['num_steps']} steps, probability-flow ODE"
        words += f" with noise {settings['ode_noise']:g}" if settings.get("ode_noise") else ""
    else:
        words = f"{settings['num_steps']} steps, noise {settings['noise_scale']:g}"
        words += f", exact SDE above t = {settings['noise_switch_t']:g}" if settings.get("noise_switch_t", 1.0) < 1.0 else ""
    return words + (f", time spacing {settings['time_spacing']:g}" if settings.get("time_spacing", 1.0) != 1.0 else "")


def plot_validity_along_rollouts(report, path) -> None:
    """Cα-valid fraction against the jump index (mean over systems and rollouts; one line per
    stride, with a 10-jump moving average) — how validity holds up along a rollout. ``report``: one
    report or a list of them (e.g. one per stride, each with its own sampler, named in its legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = [report] if isinstance(report, dict) else list(report)
    samplers = {_sampler_words(r["settings"]) for r in reports}
    fig, ax = plt.subplots(figsize=(7, 4))
    for rep in reports:
        for s in rep["settings"]["strides_ns"]:
            rows = [r for r in rep["systems"] if math.isclose(r["stride_ns"], s) and r.get("ca_valid_per_jump")]
            if not rows:
                continue
            curve = 100.0 * np.mean([r["ca_valid_per_jump"] for r in rows], axis=0)
            jumps = np.arange(1, len(curve) + 1)
            ax.plot(jumps, curve, lw=0.6, alpha=0.4)
            w = min(10, len(curve))
            smooth = np.convolve(curve, np.ones(w) / w, mode="valid")
            ax.plot(jumps[w - 1:], smooth, lw=2.0, color=ax.lines[-1].get_color(),
                    label=f"Δt = {s:g} ns ({len(rows)} protein{'s' if len(rows) > 1 else ''}; {np.mean(curve):.0f} % over all jumps)"
                    + ("" if len(samplers) == 1 else f"; {_sampler_words(rep['settings'])}"))
    settings = reports[0]["settings"]
    ax.set_xlabel("jump")
    ax.set_ylabel("Cα-valid raw samples (%)")
    ax.set_ylim(0, 102)
    ax.set_title(f"validation split, raw rollouts: {Path(str(reports[0].get('checkpoint', 'model'))).name}\n"
                 + (_sampler_words(settings) if len(samplers) == 1 else "sampler per stride in the legend")
                 + (f", context window {settings['context_window']}" if settings.get("context_window") else "")
                 + (f" + {settings['context_sink']} sink frame(s)" if settings.get("context_sink") else ""),
                 fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openmm_starmd.training.validation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="md_data", help="MD data root (default md_data)")
    parser.add_argument("--split", default="md_data/validation_split.txt", help="validation split file")
    parser.add_argument("--check", action="store_true", help="only check that the split is unrelated by sequence")
    parser.add_argument("--model", default="default", help="'default' or a checkpoint path")
    parser.add_argument("--strides", type=float, nargs="+", default=[0.1, 1.25], help="strides in ns (default 0.1 1.25)")
    parser.add_argument("--jumps", type=int, default=20, help="jumps per rollout (default 20)")
    parser.add_argument("--num-steps", type=int, default=None,
                        help="reverse-diffusion steps per jump (default: the Generator's, i.e. what the weights record)")
    parser.add_argument("--noise-scale", type=float, default=None,
                        help="reverse-SDE noise scale (default: the Generator's, i.e. what the weights record)")
    parser.add_argument("--time-spacing", type=float, default=None,
                        help="power of the reverse-diffusion time spacing (default: the Generator's, i.e. what the weights record)")
    parser.add_argument("--noise-switch-t", type=float, default=None,
                        help="diffusion time above which reverse steps take the exact SDE, noise scale 1 "
                             "(default: the Generator's, i.e. what the weights record, else 1: --noise-scale throughout)")
    parser.add_argument("--ode", action="store_true",
                        help="the probability-flow ODE at every reverse step instead of the SDE (--noise-scale unused)")
    parser.add_argument("--ode-noise", type=float, default=0.0,
                        help="with --ode, the noise each reverse step adds, with the drift that keeps the data's marginals "
                             "(0, the default: the ODE itself; 1: the reverse SDE)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--context-window", type=int, default=None,
                        help="frames each frame attends to (0: whole history; default: the Generator's, i.e. what the weights record)")
    parser.add_argument("--context-sink", type=int, default=None,
                        help="with --context-window, the first frames (the MD start) every frame attends to as well "
                             "(default: the Generator's, i.e. what the weights record, else 0)")
    parser.add_argument("--context-noise-t", type=float, default=None,
                        help="diffusion time to which each frame is noised before joining the context (default: the weights' own)")
    parser.add_argument("--rollouts-per-start", type=int, default=1,
                        help="independent rollouts from each of the two start frames, generated as one batch (default 1); "
                             "R of them cost about 1.5x one for R = 4 on a CPU and shrink the standard error of a "
                             "system's validity about as much as R seeds")
    parser.add_argument("--systems", nargs="+", help="only these validation systems")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--workers", type=int, default=1, help="processes, each scoring a share of the systems (default 1)")
    parser.add_argument("--out", help="write the JSON report here (finished cells go to OUT.partial.jsonl first, "
                                      "so that the same command resumes a stopped run)")
    parser.add_argument("--plot", help="write a PNG of Cα validity along the rollouts here")
    parser.add_argument("--merge", nargs="+", metavar="REPORT", help="only merge these reports (disjoint systems) into --out")
    parser.add_argument("--add-equilibrium", metavar="REPORT",
                        help="only add the equilibrium RMSD ratio to this report from the MD under --data, into --out")
    args = parser.parse_args(argv)
    if args.add_equilibrium:
        if not args.out:
            parser.error("--add-equilibrium needs --out")
        report = json.loads(Path(args.add_equilibrium).read_text())
        names = sorted({row["system"] for row in report["systems"]})
        report = add_equilibrium_ratios(report, _systems(args.data, names))
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(report["summary"], indent=1))
        return 0
    if args.workers < 1:
        parser.error(f"--workers: expected an int >= 1, got {args.workers}")
    if args.rollouts_per_start < 1:
        parser.error(f"--rollouts-per-start: expected an int >= 1, got {args.rollouts_per_start}")
    if args.merge:
        if not args.out:
            parser.error("--merge needs --out")
        report = merge_reports([json.loads(Path(p).read_text()) for p in args.merge])
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        if args.plot:
            plot_validity_along_rollouts(report, args.plot)
        print(json.dumps(report["summary"], indent=1))
        return 0
    torch.set_num_threads(args.threads)
    if args.check:
        rows = check_split(args.data, args.split)
        for r in rows:
            print(f"{r['system']:<32} {r['residues']:>4} residues  max identity {100 * r['max_identity']:5.1f} % "
                  f"({r['nearest_training_system']})  {'ok' if r['unrelated'] else 'TOO SIMILAR'}")
        bad = [r["system"] for r in rows if not r["unrelated"]]
        if bad:
            print(f"{len(bad)} validation system(s) reach {100 * MAX_IDENTITY:.0f} % identity to a training system: {bad}")
            return 1
        print(f"all {len(rows)} validation systems are below {100 * MAX_IDENTITY:.0f} % identity to every training system")
        return 0
    if None in (args.num_steps, args.noise_scale, args.time_spacing, args.noise_switch_t, args.context_window, args.context_sink):
        from openmm_starmd.model.checkpoint import stride_card
        from openmm_starmd.openmm.generator import GeneratorOptions

        sampler = GeneratorOptions(num_steps=args.num_steps, noise_scale=args.noise_scale,
                                   time_spacing=args.time_spacing, noise_switch_t=args.noise_switch_t,
                                   context_window=args.context_window,
                                   context_sink=args.context_sink).with_sampler_of(stride_card(args.model))
        args.num_steps, args.noise_scale, args.time_spacing = sampler.num_steps, sampler.noise_scale, sampler.time_spacing
        args.noise_switch_t, args.context_window = sampler.noise_switch_t, sampler.context_window
        args.context_sink = sampler.context_sink
    resume_file = None if not args.out else Path(f"{args.out}.partial.jsonl")
    if resume_file is not None and resume_file.is_file():
        print(f"resuming: the cells already in {resume_file} with these settings and weights are not scored again",
              file=sys.stderr, flush=True)
    report = score_in_processes(args.model, args.data, args.split, args.workers, args.threads, strides_ns=args.strides,
                                jumps=args.jumps, num_steps=args.num_steps, noise_scale=args.noise_scale,
                                time_spacing=args.time_spacing, noise_switch_t=args.noise_switch_t, seed=args.seed,
                                context_window=args.context_window, context_noise_t=args.context_noise_t,
                                context_sink=args.context_sink, rollouts_per_start=args.rollouts_per_start,
                                ode=args.ode, ode_noise=args.ode_noise, only=args.systems, verbose=True, resume_file=resume_file)
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
        resume_file.unlink(missing_ok=True)
    if args.plot:
        plot_validity_along_rollouts(report, args.plot)
    print(json.dumps(report["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
