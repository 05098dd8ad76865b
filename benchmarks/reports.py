"""Writing a benchmark's result as OUT.json (every figure) and OUT.md (a table with its command)."""
from __future__ import annotations

import json
from pathlib import Path


def write_report(out, data: dict, title: str, script: str, argv: list[str], header: list[str], rows: list[list[str]]) -> str:
    """Write ``out``.json and ``out``.md (title, the command that made it, the table); return the markdown.
    A dot inside ``out`` stays (``sweep_1.25ns`` gives ``sweep_1.25ns.json``); a ``.json`` or ``.md``
    ending is replaced."""
    out = Path(out)
    if out.suffix in (".json", ".md"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(json.dumps(data, indent=1) + "\n")
    lines = [f"# {title}", "", f"Command: `python benchmarks/{script} {' '.join(argv)}`", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    out.with_name(out.name + ".md").write_text(text)
    return text


def parse_setting(text: str) -> tuple[int, float, float, float, bool]:
    """A sampler setting NUM_STEPS:NOISE_SCALE[:TIME_SPACING[:NOISE_SWITCH_T]] as (num_steps,
    noise_scale, time_spacing, noise_switch_t, ode): ``"50:0.25"`` -> (50, 0.25, 1.0, 1.0, False);
    ``"50:1:2"`` -> (50, 1.0, 2.0, 1.0, False); ``"50:0.25:1:0.1"`` -> the exact SDE above t = 0.1,
    noise 0.25 below it. NOISE_SCALE ``ode`` takes the probability-flow ODE at every step:
    ``"50:ode"`` -> (50, 0.0, 1.0, 1.0, True)."""
    parts = text.split(":")
    if len(parts) not in (2, 3, 4):
        raise ValueError(f"expected NUM_STEPS:NOISE_SCALE[:TIME_SPACING[:NOISE_SWITCH_T]], got {text!r}")
    ode = parts[1].lower() == "ode"
    return (int(parts[0]), 0.0 if ode else float(parts[1]), float(parts[2]) if len(parts) >= 3 else 1.0,
            float(parts[3]) if len(parts) == 4 else 1.0, ode)


def setting_label(num_steps: int, noise_scale: float, time_spacing: float, noise_switch_t: float = 1.0, ode: bool = False) -> str:
    """The setting as :func:`parse_setting` reads it back, e.g. ``50:0.25:1:0.1`` (the switch only when < 1), ``50:ode:1``."""
    return (f"{num_steps}:ode:{time_spacing:g}" if ode else
            f"{num_steps}:{noise_scale:g}:{time_spacing:g}" + (f":{noise_switch_t:g}" if noise_switch_t < 1 else ""))


