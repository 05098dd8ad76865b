"""Does the model follow its context on a held-out sequence, or fall into one structure?

    python benchmarks/heldout_attractor.py [--model default] [--data md_data/trp_cage] [--jumps 10]

Rolls out ``--jumps`` frames (Δt 0.05 ns, 50 reverse steps, noise scale 0.5) from three frames of
the system's first MD trajectory that are far apart (first, middle, last) and compares, for every
pair of starts, the Cα RMSD between the two starting MD frames with the mean Cα RMSD between the
two rollouts' generated frames (second half of the jumps, frame i against frame i). Two seeds
settings: the same noise for every start, and a different seed per start. A model that follows its
context keeps the rollouts about as far apart as their starts; a model that ignores the context of
an unseen sequence sends all of them to the same structure. Also printed: each rollout's mean Cα RMSD
to its own start. Writes
benchmarks/results/heldout_attractor/attractor_{model}.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from openmm_starmd.data.dataset import load_or_convert
from openmm_starmd.data.readers import find_sources
from openmm_starmd.geometry.superpose import rmsd
from openmm_starmd.model.checkpoint import load_model
from openmm_starmd.training.heldout import rollout_from_md_frame
from openmm_starmd.units import ANGSTROM_PER_NM

RESULTS = Path(__file__).resolve().parent / "results" / "heldout_attractor"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", default="md_data/trp_cage")
    parser.add_argument("--jumps", type=int, default=10)
    parser.add_argument("--stride-ns", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    first = load_or_convert(find_sources(args.data)[0], None)
    core = load_model(args.model)
    num_frames = first.trans.shape[0]
    starts = [0, num_frames // 2, num_frames - 1]
    md = {s: torch.from_numpy(first.trans[s]).double() for s in starts}
    report = {"model": args.model, "system": Path(args.data).name, "stride_ns": args.stride_ns, "jumps": args.jumps,
              "num_steps": 50, "noise_scale": 0.5, "start_frames": starts, "pairs": []}
    generated = {}
    for same_seed in (True, False):
        for s in starts:
            rollout = rollout_from_md_frame(core, first, s, args.stride_ns, args.jumps, seed=0 if same_seed else s + 1,
                                            num_steps=50, noise_scale=0.5)
            generated[same_seed, s] = rollout.run(args.jumps).trans[0].double()
    half = args.jumps // 2
    report["rollouts"] = []
    for (same_seed, s), frames in generated.items():
        to_start = float(rmsd(frames[half:], md[s][None].expand_as(frames[half:])).mean()) * ANGSTROM_PER_NM
        report["rollouts"].append({"start": s, "same_seed": same_seed, "generated_ca_rmsd_to_start_angstrom": round(to_start, 2)})
        print(f"start {s:3d} ({'seed 0' if same_seed else f'seed {s + 1}'}): generated frames {to_start:.1f} Å from their start")
    for i, a in enumerate(starts):
        for b in starts[i + 1:]:
            row = {"starts": [a, b], "md_start_ca_rmsd_angstrom": round(float(rmsd(md[a][None], md[b][None])[0]) * ANGSTROM_PER_NM, 2)}
            for same_seed, key in ((True, "generated_ca_rmsd_same_seed_angstrom"), (False, "generated_ca_rmsd_other_seed_angstrom")):
                x, y = generated[same_seed, a][half:], generated[same_seed, b][half:]
                row[key] = round(float(rmsd(x, y).mean()) * ANGSTROM_PER_NM, 2)
            report["pairs"].append(row)
            print(f"starts {a:3d} vs {b:3d}: MD {row['md_start_ca_rmsd_angstrom']:5.1f} Å apart; generated frames "
                  f"{row['generated_ca_rmsd_same_seed_angstrom']:.1f} Å apart (same seed), "
                  f"{row['generated_ca_rmsd_other_seed_angstrom']:.1f} Å (different seeds)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = Path(args.model).stem if args.model != "default" else "default"
    (RESULTS / f"attractor_{name}.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
