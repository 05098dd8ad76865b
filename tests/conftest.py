import os

import pytest
import torch

torch.set_num_threads(2)


def randomize_(module: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """Give every zero-initialised parameter random values, so an untrained network is not the
    identity map and tests see every branch (adaLN gates, backbone update, torsion head)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if torch.count_nonzero(p) == 0:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def random_protein(num_res: int, seed: int = 0):
    """A compact random chain: aatype [N], residue_index [N], frames (rots [N,3,3], trans [N,3] nm)."""
    from openmm_starmd.geometry.so3 import uniform_random_rotmat

    g = torch.Generator().manual_seed(seed)
    aatype = torch.randint(0, 20, (num_res,), generator=g)
    residue_index = torch.arange(num_res) + 3
    steps = torch.randn(num_res, 3, generator=g)
    steps = 0.38 * steps / steps.norm(dim=-1, keepdim=True)  # 3.8 Å CA-CA
    trans = torch.cumsum(steps, 0)
    trans = trans - trans.mean(0)
    rots = uniform_random_rotmat([num_res], generator=g)
    return aatype, residue_index, rots, trans


@pytest.fixture
def villin_pdb_path():
    import openmm.app

    return os.path.join(os.path.dirname(openmm.app.__file__), "data", "test.pdb")
