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


def parse_setting(text: str) -> tuple[int, float, float]:
    """A sampler setting NUM_STEPS:NOISE_SCALE[:TIME_SPACING]: ``"50:0.25"`` -> (50, 0.25, 1.0);
    ``"50:1:2"`` -> (50, 1.0, 2.0)."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"expected NUM_STEPS:NOISE_SCALE[:TIME_SPACING], got {text!r}")
    return int(parts[0]), float(parts[1]), float(parts[2]) if len(parts) == 3 else 1.0
