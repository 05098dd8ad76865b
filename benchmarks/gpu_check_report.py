"""The Markdown report of ``gpu_check.py`` (pure formatting of its JSON)."""
from __future__ import annotations

from gpu_check_sections import PAPER_TABLE21_S, Sizes


def _fmt(x, digits: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, (int, float)):
        return f"{x:,.{digits}f}"
    return str(x)


def _status_line(name: str, sec: dict) -> str:
    return f"- **{name}**: {sec.get('status', 'not run')}" + (f" ({sec['wall_s']} s)" if "wall_s" in sec else "")


def markdown(report: dict, sizes: Sizes) -> str:
    s = report["sections"]
    env = s.get("environment", {})
    gpu = env.get("gpu", {})
    lines = [f"# GPU check, {report['date']}", "",
             f"Mode: {report['mode']}. Command: `{report['command']}`. Budget {report['budget_s']:.0f} s"
             + (f", took {report['total_s']:.0f} s." if "total_s" in report else " (run in progress)."), "",
             f"Machine: {gpu.get('name', 'no GPU')} ({gpu.get('memory_gib', '—')} GiB), {env.get('cpu_count', '—')} CPU cores; "
             f"torch {env.get('torch', '—')} (CUDA {gpu.get('torch_cuda', '—')}); Python {env.get('python', '—')}; "
             f"OpenMM {env.get('openmm', {}).get('version', '—')}, platforms {env.get('openmm', {}).get('platforms', '—')}; "
             f"flash-attn: {env.get('flash_attn', '—')}.", ""]
    failures = env.get("openmm", {}).get("plugin_load_failures") or []
    cuda_failures = [f for f in failures if "CUDA" in f or "cuda" in f]
    if failures:
        lines += [f"OpenMM plugin load failures: {len(failures)}, {len(cuda_failures)} of them CUDA"
                  + (f": `{'; '.join(cuda_failures)[:600]}`" if cuda_failures else " (all in gpu_check.json)"), ""]
    lines += ["## Sections", ""] + [_status_line(n, sec) for n, sec in s.items()] + [""]
    lines += _generator(report, s.get("generator", {}), sizes)
    lines += _md(s.get("md", {}))
    lines += _attention(s.get("attention", {}))
    lines += _training(s.get("training", {}))
    lines += _tests(s.get("cuda_tests", {}))
    if "md_many" in s:
        lines += _md_many(s["md_many"])
    failed = [(n, sec) for n, sec in s.items() if sec.get("status", "ok") != "ok" and "log_tail" in sec]
    for name, sec in failed:
        lines += [f"## Log tail of {name}", "", "```", sec["log_tail"].strip()[-1200:], "```", ""]
    return "\n".join(lines) + "\n"


def _generator(report: dict, gen: dict, sizes: Sizes) -> list[str]:
    lines = ["## Generator: one frame and a 100 ns rollout", ""]
    if not gen.get("sizes"):
        return lines + ["Not measured.", ""]
    lines += [f"Preset `{gen.get('preset')}` ({_fmt(gen.get('parameters'), 0)} parameters, {gen.get('weights')}); "
              f"{gen.get('frames')} frames × {gen.get('steps')} reverse-diffusion steps at {gen.get('stride_ns')} ns per frame.", "",
              "| residues | one frame (s) | first frame incl. warm-up (s) | 100 ns rollout (s) | how | peak GPU memory (GiB) |",
              "|---:|---:|---:|---:|---|---:|"]
    for r in gen["sizes"]:
        if "error" in r and "rollout_s" not in r:
            lines.append(f"| {r['residues']} | failed: {r['error']} | | | | |")
            continue
        lines.append(f"| {r['residues']} | {_fmt(r.get('one_frame_s'), 3)} | {_fmt(r.get('first_frame_s_with_warmup'), 3)} | "
                     f"{_fmt(r.get('rollout_s'))} | {r.get('rollout_how', '')} | {_fmt(r.get('peak_memory_gib'), 2)} |")
    rows = report.get("generator_vs_md", [])
    if rows:
        lines += ["", "Against MD here and against the paper's table 21 (one H100; STAR-MD "
                  f"{PAPER_TABLE21_S['STAR-MD']}, MD {PAPER_TABLE21_S['MD (OpenMM, Amber, implicit solvent)']} s):", "",
                  "| residues | rollout here (s) | MD here, 100 ns (s) | speed-up over MD here | paper STAR-MD (s) "
                  "| paper speed-up over MD | paper time / time here |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            paper_speedup = r["paper_md_s"] / r["paper_star_md_s"] if r.get("paper_md_s") and r.get("paper_star_md_s") else None
            lines.append(f"| {r['residues']} | {_fmt(r['rollout_s'])} | {_fmt(r.get('md_s_per_100ns'))} | "
                         f"{_fmt(r.get('generator_over_md'), 2)} | {_fmt(r.get('paper_star_md_s'))} | {_fmt(paper_speedup, 2)} | "
                         f"{_fmt(r.get('paper_over_this'), 2)} |")
    return lines + [""]


def _md(md: dict) -> list[str]:
    lines = ["## Plain MD on the platform", ""]
    if not md.get("systems"):
        return lines + ["Not measured.", ""]
    lines += ["| system | structures | residues | atoms | platform | ns/day | s per 100 ns | set-up (s) |", "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in md["systems"]:
        if "error" in r:
            lines.append(f"| {r['system']} | {', '.join(r['structures'])} | failed: {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['system']} | {', '.join(r['structures'])} | {r['residues']} | {r['atoms']} | {r['platform']} | "
                     f"{_fmt(r['ns_per_day'])} | {_fmt(r['s_per_100ns'])} | {r['setup_s']} |")
    return lines + [""]


def _attention(att: dict) -> list[str]:
    lines = ["## Attention: SDPA vs FlashAttention", ""]
    if not att.get("shapes"):
        return lines + ["Not measured.", ""]
    if "flash_attn" in att:
        lines += [f"flash-attn: {att['flash_attn']}", ""]
    for r in att["shapes"]:
        lines += [f"N = {r['N']} query tokens, L·N = {r['L'] * r['N']} keys, {r['heads']} heads × {r['head_dim']}:", "",
                  "| variant | ms per call | max abs diff vs math backend (bf16) |", "|---|---:|---:|"]
        for name, ms in r["ms"].items():
            lines.append(f"| {name} | {_fmt(ms, 3)} | {_fmt(r['max_abs_diff_vs_math_bf16'].get(name), 4)} |")
        lines.append("")
    return lines


def _training(tr: dict) -> list[str]:
    lines = ["## Training speed", ""]
    if not tr.get("presets"):
        return lines + ["Not measured.", ""]
    lines += ["| preset | data | residues | frames | batch | bf16 | steps | steps/s | peak GPU memory (GiB) |",
              "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in tr["presets"]:
        if "error" in r:
            lines.append(f"| {r['preset']} | {r['data']} | failed: {r['error']} | | | | | | |")
            continue
        lines.append(f"| {r['preset']} | {r['data']} | {r['residues']} | {r['frames']} | {r['batch_size']} | {r['bf16']} | "
                     f"{r['steps']} | {_fmt(r['steps_per_s'], 3)} | {_fmt(r.get('peak_memory_gib'), 2)} |")
    return lines + [""]


def _tests(t: dict) -> list[str]:
    if not t or "command" not in t:
        return ["## CUDA-marked tests", "", "Not run.", ""]
    return ["## CUDA-marked tests", "", f"`{t['command']}`: exit code {t.get('returncode')} ({t.get('meaning', '')}); "
            f"{t.get('summary', '')}. Log: cuda_tests.log.", ""]


def _md_many(m: dict) -> list[str]:
    lines = ["## MD of many systems side by side", ""]
    if not m.get("systems"):
        return lines + ["Not run.", ""]
    lines += [f"{m.get('minutes')} min, one `starmd simulate` process per system (`{m.get('command', '')}`); "
              f"trajectories in {m.get('archive', '—')} ({m.get('archive_mib', '—')} MiB).", "",
              "| system | residues | chunks | ns | ns/day | exit code |", "|---|---:|---:|---:|---|---:|"]
    for r in m["systems"]:
        lines.append(f"| {r['system']} | {_fmt(r.get('residues'), 0)} | {r['chunks']} | {_fmt(r.get('ns'), 3)} | "
                     f"{r.get('ns_per_day')} | {r.get('returncode')} |")
    return lines + [""]
