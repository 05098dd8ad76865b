"""Compare two sets of weights on the validation split, with the uncertainty the comparison has.

A validation report (``python -m openmm_starmd.training.validation``) scores two rollouts per
system and stride. Their frames are far from independent: a rollout that breaks its chain stays
broken for several jumps, so 20 jumps × 2 rollouts × 10 systems is closer to 20 samples than to
400. This script pools reports of the same weights made with different ``--seed`` values (more
rollouts from the same starts) and reports, per stride:

* each side's Cα validity, pooled over its reports, with a standard error over its
  (system, seed) cells;
* the difference B − A with a paired standard error over systems (each system's validity
  averaged over its seeds first), which is what says whether B beats A.

    python benchmarks/validation_compare.py --a ctl_seed0.json ctl_seed10.json \
        --b new_seed0.json new_seed10.json --label-a control --label-b new --out benchmarks/results/NAME

Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reports import write_report  # noqa: E402


def cells(reports: list[dict]) -> dict:
    """``{stride_ns: {system: [ca_valid of each report]}}`` from reports with the same settings but the seed
    (and, for the ODE, but the SDE's noise settings, which it does not use)."""
    if not reports:
        raise ValueError("no reports given")
    def compared(settings: dict) -> dict:
        unused = {"seed", "noise_scale", "noise_switch_t"} if settings.get("sampler") == "ode" else {"seed"}
        return {k: v for k, v in settings.items() if k not in unused}

    strip = [compared(r["settings"]) for r in reports]
    if any(s != strip[0] for s in strip[1:]):
        raise ValueError("the reports of one side differ in more than the seed")
    seeds = [r["settings"].get("seed") for r in reports]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"two reports of one side have the same seed: {seeds}")
    out: dict = {}
    for r in reports:
        for row in r["systems"]:
            out.setdefault(float(row["stride_ns"]), {}).setdefault(row["system"], []).append(float(row["ca_valid"]))
    return out


def _mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def compare(a: list[dict], b: list[dict]) -> dict:
    """Per stride: pooled validity of each side with its SE over (system, seed) cells, and the paired
    difference B − A over the systems both sides scored."""
    ca, cb = cells(a), cells(b)
    result = {}
    for stride in sorted(set(ca) & set(cb)):
        systems = sorted(set(ca[stride]) & set(cb[stride]))
        if not systems:
            continue
        side = {}
        for name, c in (("a", ca[stride]), ("b", cb[stride])):
            mean, se = _mean_se([v for s in systems for v in c[s]])
            side[name] = {"ca_valid": mean, "se": se, "cells": sum(len(c[s]) for s in systems)}
        diffs = [sum(cb[stride][s]) / len(cb[stride][s]) - sum(ca[stride][s]) / len(ca[stride][s]) for s in systems]
        diff, diff_se = _mean_se(diffs)
        result[f"{stride:g}ns"] = {**side, "difference": diff, "difference_se": diff_se, "systems": len(systems),
                                   "per_system": {s: {"a": ca[stride][s], "b": cb[stride][s]} for s in systems}}
        for name, reports in (("a", a), ("b", b)):
            result[f"{stride:g}ns"][name]["invalid_by"] = causes(reports, stride, systems)
    return result


def causes(reports: list[dict], stride: float, systems: list[str]) -> dict | None:
    """Why frames failed, pooled over the reports' rows of ``systems`` at ``stride``: the mean
    fractions of frames failing by a break only, a clash only or both, and the summed clashing
    pairs, local and long-range (None when a report predates these fields)."""
    rows = [row for r in reports for row in r["systems"] if math.isclose(row["stride_ns"], stride) and row["system"] in systems]
    if not rows or any("invalid_by" not in row for row in rows):
        return None
    keys = rows[0]["invalid_by"]
    return {k: (sum(row["invalid_by"][k] for row in rows) / len(rows) if k in ("break_only", "clash_only", "both")
                else sum(row["invalid_by"][k] for row in rows)) for k in keys}


def _causes_cell(c: dict | None) -> str:
    if c is None:
        return "—"
    return (f"{100 * c['break_only']:.1f} / {100 * c['clash_only']:.1f} / {100 * c['both']:.1f} "
            f"({c['clash_pairs_local']} / {c['clash_pairs_long_range']})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", nargs="+", required=True, help="validation reports of the first weights (one per seed)")
    parser.add_argument("--b", nargs="+", required=True, help="validation reports of the second weights (one per seed)")
    parser.add_argument("--label-a", default="A")
    parser.add_argument("--label-b", default="B")
    parser.add_argument("--out", required=True, help="output path without extension")
    args = parser.parse_args(argv)
    load = lambda paths: [json.loads(Path(p).read_text()) for p in paths]  # noqa: E731
    result = compare(load(args.a), load(args.b))
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    rows = [[stride, f"{pct(r['a']['ca_valid'])} ± {pct(r['a']['se'])} ({r['a']['cells']})",
             f"{pct(r['b']['ca_valid'])} ± {pct(r['b']['se'])} ({r['b']['cells']})",
             f"{'+' if r['difference'] >= 0 else ''}{pct(r['difference'])} ± {pct(r['difference_se'])}", str(r["systems"]),
             _causes_cell(r["a"]["invalid_by"]), _causes_cell(r["b"]["invalid_by"])]
            for stride, r in result.items()]
    header = ["stride", f"Cα-valid % {args.label_a} ± SE (cells)", f"Cα-valid % {args.label_b} ± SE (cells)",
              f"{args.label_b} − {args.label_a} ± paired SE (points)", "systems",
              f"{args.label_a}: % of frames invalid by break / clash / both (clashing pairs local / long-range)",
              f"{args.label_b}: the same"]
    data = {"a": {"label": args.label_a, "reports": args.a}, "b": {"label": args.label_b, "reports": args.b}, "strides": result}
    print(write_report(args.out, data, f"Validation split: {args.label_b} against {args.label_a}", "validation_compare.py",
                       sys.argv[1:] if argv is None else list(argv), header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
