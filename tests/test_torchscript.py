"""Scripted equals eager; the exported file runs in a fresh process without openmm_starmd."""
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import randomize_, random_protein
from openmm_starmd.model import Rollout, StarMDCore, tiny
from openmm_starmd.model.config import tiny_v2, tiny_v3
from openmm_starmd.model.export import export_core, script_core

N = 7


def _core(seed=0, make=tiny):
    # mild random weights keep frames at a protein's scale (nm), so fp32 bounds are meaningful
    torch.manual_seed(seed)
    return randomize_(StarMDCore(make()), seed=seed, std=0.05).eval()


@pytest.mark.parametrize("make", [tiny, tiny_v2, tiny_v3], ids=["first", "generalising", "blended_start"])
def test_scripted_equals_eager_rollout(make):
    core = _core(make=make)
    scripted = script_core(_core(make=make))
    aatype, resid, rots, trans = random_protein(N, 1)
    outs = []
    for c in (core, scripted):
        r = Rollout(c, aatype, resid, 1.25, replicas=2, seed=123, num_steps=6, capacity_frames=8)
        r.add_context(rots, trans)
        outs.append(r.run(3))
    assert outs[0].trans.abs().max() < 10.0
    assert (outs[0].trans - outs[1].trans).abs().max() < 1e-4
    assert (outs[0].rots - outs[1].rots).abs().max() < 1e-4
    assert (outs[0].torsions - outs[1].torsions).abs().max() < 1e-4


def test_exported_file_runs_without_package(tmp_path):
    core = _core(2)
    path = tmp_path / "core.pt"
    export_core(core, path, {"preset": "tiny"})
    aatype, resid, rots, trans = random_protein(N, 3)
    torch.save({"aatype": aatype, "resid": resid, "rots": rots, "trans": trans}, tmp_path / "inp.pt")
    # eager reference with the same seed and the same call sequence as the script below
    core.start(aatype[None], resid[None], torch.zeros_like(resid)[None], 4)
    torch.manual_seed(7)
    core.append_frame(rots[None], trans[None], torch.zeros(1), 0.05)
    _, x_ref, _ = core.step(torch.zeros(1), 5, False, 1.0)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["openmm_starmd"] = None  # importing the package would fail loudly
        import torch
        core = torch.jit.load({str(path)!r})
        d = torch.load({str(tmp_path / "inp.pt")!r})
        core.start(d["aatype"][None], d["resid"][None], torch.zeros_like(d["resid"])[None], 4, None, None)
        torch.manual_seed(7)
        core.append_frame(d["rots"][None], d["trans"][None], torch.zeros(1), 0.05)
        r, x, tor = core.step(torch.zeros(1), 5, False, 1.0)
        torch.save(x, {str(tmp_path / "out.pt")!r})
        assert "openmm_starmd.model" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    x = torch.load(tmp_path / "out.pt")
    assert x.shape == (1, N, 3)
    assert x_ref.abs().max() < 10.0
    assert (x - x_ref).abs().max() < 1e-4
