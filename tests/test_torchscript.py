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


def test_time_spacing_reaches_the_sampler_scripted_and_eager():
    """time_spacing moves the reverse-diffusion times (other frames than even spacing, same seed),
    and a scripted core follows it exactly as the eager one does."""
    aatype, resid, rots, trans = random_protein(N, 4)
    outs = {}
    for name, c, spacing in (("eager", _core(), 2.0), ("scripted", script_core(_core()), 2.0), ("even", _core(), 1.0)):
        r = Rollout(c, aatype, resid, 0.1, seed=5, num_steps=6, time_spacing=spacing, capacity_frames=6)
        r.add_context(rots, trans)
        outs[name] = r.run(2).trans
    assert (outs["eager"] - outs["scripted"]).abs().max() < 1e-4
    assert (outs["eager"] - outs["even"]).abs().max() > 1e-3
    state = Rollout(_core(), aatype, resid, 0.1, seed=5, num_steps=6, time_spacing=2.0).state_dict()
    assert Rollout.from_state(_core(), state).time_spacing == 2.0
    with pytest.raises(ValueError, match="time_spacing must be a number > 0"):
        Rollout(_core(), aatype, resid, 0.1, time_spacing=0.0)


class _EvenTimesCore(torch.nn.Module):
    """The sampling boundary of a core exported before sample_frame took a time spacing."""

    def __init__(self):
        super().__init__()
        self.stride_min_ns = 0.01
        self.stride_max_ns = 10.0

    @torch.jit.export
    def sample_frame(self, log10_stride_ns: torch.Tensor, num_steps: int, ode: bool, noise_scale: float):
        return log10_stride_ns, log10_stride_ns, log10_stride_ns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_a_core_exported_without_time_spacing_samples_at_even_times_only():
    from openmm_starmd.model.rollout import takes_time_spacing

    old = torch.jit.script(_EvenTimesCore())
    assert not takes_time_spacing(old)
    assert takes_time_spacing(script_core(_core())) and takes_time_spacing(_core())
    aatype, resid, _, _ = random_protein(N, 4)
    with pytest.raises(ValueError, match="evenly spaced times only"):
        Rollout(old, aatype, resid, 0.1, time_spacing=2.0)


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
    _, x_ref, _ = core.step(torch.zeros(1), 5, False, 1.0, 1.0, 1.0)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["openmm_starmd"] = None  # importing the package would fail loudly
        import torch
        core = torch.jit.load({str(path)!r})
        d = torch.load({str(tmp_path / "inp.pt")!r})
        core.start(d["aatype"][None], d["resid"][None], torch.zeros_like(d["resid"])[None], 4, None, None)
        torch.manual_seed(7)
        core.append_frame(d["rots"][None], d["trans"][None], torch.zeros(1), 0.05)
        r, x, tor = core.step(torch.zeros(1), 5, False, 1.0, 1.0, 1.0)
        torch.save(x, {str(tmp_path / "out.pt")!r})
        assert "openmm_starmd.model" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    x = torch.load(tmp_path / "out.pt")
    assert x.shape == (1, N, 3)
    assert x_ref.abs().max() < 10.0
    assert (x - x_ref).abs().max() < 1e-4


def test_noise_switch_gives_the_exact_sde_above_it_and_noise_scale_below_scripted_and_eager():
    """noise_switch_t = 0 is the exact SDE at every step, 1 is ``noise_scale`` at every step (the
    same frames, same seed, as without the option); a switch in between gives other frames than
    both; a scripted core follows it as the eager one does; the state round-trips."""
    from openmm_starmd.model.rollout import check_noise_switch

    aatype, resid, rots, trans = random_protein(N, 4)

    def run(core, noise_scale, switch=None):
        kwargs = {} if switch is None else {"noise_switch_t": switch}
        r = Rollout(core, aatype, resid, 0.1, seed=5, num_steps=6, noise_scale=noise_scale, capacity_frames=6, **kwargs)
        r.add_context(rots, trans)
        return r.run(2).trans

    exact, low = run(_core(), 1.0), run(_core(), 0.25)
    assert (run(_core(), 0.25, 0.0) - exact).abs().max() < 1e-6
    assert (run(_core(), 0.25, 1.0) - low).abs().max() < 1e-6
    mixed = run(_core(), 0.25, 0.5)
    assert (mixed - exact).abs().max() > 1e-3 and (mixed - low).abs().max() > 1e-3
    assert (run(script_core(_core()), 0.25, 0.5) - mixed).abs().max() < 1e-4
    state = Rollout(_core(), aatype, resid, 0.1, seed=5, num_steps=6, noise_switch_t=0.1).state_dict()
    assert Rollout.from_state(_core(), state).noise_switch_t == 0.1
    with pytest.raises(ValueError, match="noise_switch_t must be a diffusion time"):
        Rollout(_core(), aatype, resid, 0.1, noise_switch_t=1.5)
    old = torch.jit.script(_EvenTimesCore())
    with pytest.raises(ValueError, match="export it again"):
        Rollout(old, aatype, resid, 0.1, noise_switch_t=0.1)
    assert check_noise_switch(old, 1.0) == 1.0  # no switch asked: an old core still samples


def test_ode_noise_reaches_the_sampler_scripted_and_eager():
    """``ode_noise`` 0 is the ODE (the frames without the option), 1 the exact SDE (noise scale 1,
    same seed); 0.5 gives other frames than both; a scripted core follows the eager one; the
    state round-trips; it needs ``ode`` and a core that takes it."""
    aatype, resid, rots, trans = random_protein(N, 6)

    def run(core, **kwargs):
        r = Rollout(core, aatype, resid, 1.25, seed=7, num_steps=6, capacity_frames=6, **kwargs)
        r.add_context(rots, trans)
        return r.run(2).trans

    ode, sde = run(_core(), ode=True), run(_core(), noise_scale=1.0)
    assert (run(_core(), ode=True, ode_noise=0.0) - ode).abs().max() < 1e-6
    assert (run(_core(), ode=True, ode_noise=1.0) - sde).abs().max() < 1e-5
    half = run(_core(), ode=True, ode_noise=0.5)
    assert (half - ode).abs().max() > 1e-3 and (half - sde).abs().max() > 1e-3
    assert (run(script_core(_core()), ode=True, ode_noise=0.5) - half).abs().max() < 1e-4
    state = Rollout(_core(), aatype, resid, 1.25, seed=7, num_steps=6, ode=True, ode_noise=0.3).state_dict()
    assert Rollout.from_state(_core(), state).ode_noise == 0.3
    with pytest.raises(ValueError, match="ode_noise must lie in"):
        Rollout(_core(), aatype, resid, 1.25, ode=True, ode_noise=-0.1)
    with pytest.raises(ValueError, match="ODE sampler only"):
        Rollout(_core(), aatype, resid, 1.25, ode_noise=0.5)
    with pytest.raises(ValueError, match="export it again"):
        Rollout(torch.jit.script(_EvenTimesCore()), aatype, resid, 1.25, ode=True, ode_noise=0.5)
