"""A TorchScript core started a second time (a new rollout, or the Generator's context replay) must
give the eager core's frames. TorchScript's optimising executor re-specialises such a core wrongly
(with trained weights the second rollout's frames differ by Å); the Rollout therefore runs every
call of a scripted core under the plain executor. Random weights do not show it (zero-initialised
output layers make the frames ignore the cache), so the shipped weights are used."""
from __future__ import annotations

import torch

from openmm_starmd.geometry.so3 import uniform_random_rotmat
from openmm_starmd.model.export import script_core
from openmm_starmd.model.rollout import Rollout

torch.set_num_threads(1)
N = 7  # residues


def _rollout_trans(core, aatype, resid, rots, trans, frames=3):
    r = Rollout(core, aatype, resid, 0.05, seed=3, num_steps=3, capacity_frames=frames + 2)
    r.add_context(rots, trans)
    return r.run(frames).trans


def test_scripted_core_started_twice_equals_eager():
    from openmm_starmd.model.checkpoint import load_model

    eager = load_model("default")
    g = torch.Generator().manual_seed(0)
    aatype, resid = torch.randint(0, 20, (N,), generator=g), torch.arange(1, N + 1)
    steps = 0.38 * torch.nn.functional.normalize(torch.randn(N, 3, generator=g), dim=-1)
    trans = torch.cumsum(steps, 0)
    trans = trans - trans.mean(0)
    rots = uniform_random_rotmat([N], generator=g)
    reference = _rollout_trans(eager, aatype, resid, rots, trans)
    scripted = script_core(eager)
    for _ in range(3):  # the second start() of the same core is where the optimising executor went wrong
        torch.testing.assert_close(_rollout_trans(scripted, aatype, resid, rots, trans), reference, atol=1e-4, rtol=0)
