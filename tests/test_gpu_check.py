"""benchmarks/gpu_check.py runs end to end (smoke mode on the CPU) and writes a complete report; on a
GPU, the network gives on CUDA what it gives on the CPU."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_smoke_run_writes_every_section(tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--minimal", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    sections = report["sections"]
    assert list(sections) == ["environment", "cuda_tests", "generator", "md", "attention", "training"]
    for name, sec in sections.items():
        assert sec["status"] == "ok", (name, sec)
    assert sections["cuda_tests"]["returncode"] == 0  # the CUDA test below is selected and skips itself on a CPU
    (row,) = sections["generator"]["sizes"]
    assert row["residues"] == 7 and len(row["measured_frame_s"]) == 3 and row["rollout_s"] > 0
    assert row["rollout_how"].startswith("estimated: 3 of 4 frames")  # the path a GPU run takes at 80 frames
    assert 0 < row["network_call_s"]["context_1"] and 0 < row["network_call_s"]["context_4"]
    (md,) = sections["md"]["systems"]
    assert md["residues"] == 7 and md["platform"] == "CPU" and md["ns_per_day"] > 0
    assert sections["attention"]["shapes"][0]["max_abs_diff_vs_math_bf16"]  # bf16 variants checked against the math backend
    (train,) = sections["training"]["presets"]
    assert train["preset"] == "tiny" and train["steps"] >= 2 and train["steps_per_s"] > 0
    (ratio,) = report["generator_vs_md"]
    assert ratio["generator_over_md"] == pytest.approx(md["s_per_100ns"] / row["rollout_s"], rel=0.01)
    text = (out / "gpu_check.md").read_text()
    for heading in ("## Generator", "## Plain MD", "## Attention", "## Training speed", "## CUDA-marked tests"):
        assert heading in text


def test_a_failing_section_is_recorded_and_the_others_run(tmp_path, monkeypatch):
    import gpu_check

    calls = []

    def fake_isolated(name, argv, box_s, work):
        calls.append(name)
        if name == "generator":
            return {"status": "failed (exit code 1)", "wall_s": 0.1, "log_tail": "RuntimeError: CUDA out of memory"}
        return {"status": "ok", "wall_s": 0.1}

    monkeypatch.setattr(gpu_check, "run_isolated", fake_isolated)
    assert gpu_check.main(["--smoke", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert calls == ["environment", "cuda_tests", "generator", "md", "attention", "training"]
    assert report["sections"]["generator"]["status"].startswith("failed")
    assert "CUDA out of memory" in (tmp_path / "gpu_check.md").read_text()


def test_bad_options_are_refused(tmp_path):
    import gpu_check

    with pytest.raises(ValueError, match="--minimal only applies to --smoke"):
        gpu_check.main(["--minimal", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="--budget-s must be > 0"):
        gpu_check.main(["--smoke", "--budget-s", "0", "--out", str(tmp_path)])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_network_call_on_cuda_equals_cpu():
    from conftest import random_protein, randomize_
    from openmm_starmd.model import StarMDCore, tiny

    aatype, resid, rots, trans = random_protein(13, seed=4)
    results = []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        core = randomize_(StarMDCore(tiny()), seed=1).eval().to(device)
        core.start(aatype[None].to(device), resid[None].to(device), torch.zeros_like(resid)[None].to(device), 4)
        ls = torch.zeros(1, device=device)
        core.append_frame(rots[None].to(device), trans[None].to(device), ls, 0.0)
        r0, x0, tors = core.denoise(rots[None].to(device), trans[None].to(device), 0.5, ls)
        results.append([t.cpu() for t in (r0, x0, tors)])
    for cpu, cuda in zip(*results):
        assert torch.allclose(cpu, cuda, atol=1e-3), (cpu - cuda).abs().max()
