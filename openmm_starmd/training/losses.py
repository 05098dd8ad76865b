"""Training losses of STAR-MD (SPEC §4): score matching on SE(3) plus AF2/FrameDiff structure terms.

Every term is computed over the L-1 noisy (target) frames and the present residues only.

Units: nanometres throughout. FAPE follows AlphaFold 2 (supplement 1.9.2) with its 10 Å clamp
and 10 Å length scale written in nm (``fape_clamp_nm = fape_length_scale_nm = 1.0``), so a
prediction whose every local error exceeds the clamp scores 1.0, as in AF2. The clamp is
always applied (AF2 leaves 10 % of backbone FAPE unclamped; we do not).

Term definitions (shapes: B batch, F target frames, N residues):

* rotation score: ``|s_rot(x̂_0) - s_rot(x_0)|² / rot_score_scaling(t)²`` averaged over the
  3 components of present residues (FrameDiff's normalised score loss);
* translation score: the same with the VP-SDE score and ``trans_score_scaling(t)``;
* torsion: AF2 Alg. 27 — ``min(|â - a|², |â - a_alt|²)`` over defined torsions (the π-periodic
  χ have the alternative ``a_alt``) plus ``torsion_norm_weight · mean | |raw| - 1 |``;
* backbone FAPE: backbone frames x CA positions; side-chain FAPE: the 8 rigid-group frames x
  atom14 heavy atoms of each frame's residues, against the truth rebuilt from the true torsions
  or their π-periodic alternative, whichever the predicted torsions are closer to (AF2's
  alt-truth for symmetric side chains, decided per residue);
* backbone coordinates: mean squared error of N, CA, C, O (centred frames);
* distance map: squared error of backbone-atom pair distances closer than
  ``dist_map_cutoff_nm`` (FrameDiff: 6 Å) in the truth.

The last two only count where ``t <= low_t_threshold``. Three optional terms (weight 0: off) count
at every t up to their ``*_max_t``: the consecutive-Cα distance error (``ca_bond``), Cα excluded
volume (``ca_clash``) and the Cα radius-of-gyration error of each frame (``ca_rg``, against compaction).
A fourth optional term, ``ca_x0``, is the squared Cα error of x̂₀ (Å², mean over residues, centred)
at every t.
The translation score loss is this same error times a weight that falls with t, so ``ca_x0`` puts a
floor under that weight; its minimiser is still the conditional mean.
The FAPE terms count up to ``fape_max_t`` (default: every t, as in the paper).

Why the limits exist: the score loss weighs an x̂₀ error by the signal-to-noise ratio, so above
t ≈ 0.1 it is weak: per Å² of one residue's Cα error (averaged over residues) it weighs 0.56 at
t = 0.02, 0.029 at t = 0.1, 0.0064 at t = 0.2 and 0.0022 at t = 0.3, while a Cα bond loss of
weight 5 weighs each Å² of a bond-length error (averaged over bonds) 5 at every t. Above t ≈ 0.1
the structure terms, not score matching, decide x̂₀ wherever they disagree with the mean (the mean
of a broad next frame has short Cα-Cα distances): x̂₀ becomes one chain-valid structure near the
context rather than the conditional mean the reverse SDE needs, and samples move less than MD.
A limited term is zero on the frames above its limit and still divided by all target frames, so a
limit lowers the term's weight, never raises it. Measured: benchmarks/results/ablation_small_v3.md,
rows 63-64.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, NamedTuple, Optional

import torch

from openmm_starmd.diffusion import SE3Diffuser
from openmm_starmd.diffusion.internal import remove_mean
from openmm_starmd.geometry import frames_to_atom14, residue_constants as rc, torsion_angles_to_frames
from openmm_starmd.units import ANGSTROM_PER_NM, NM_PER_ANGSTROM

NUM_BACKBONE_ATOMS = 4  # N, CA, C, O: the first four atom14 slots


@dataclass
class LossConfig:
    """Weights and constants of the training losses (defaults: SPEC §4, AF2, FrameDiff)."""

    rot_score_weight: float = 0.5
    trans_score_weight: float = 1.0
    torsion_weight: float = 0.5
    bb_fape_weight: float = 0.5
    sc_fape_weight: float = 0.5
    bb_coord_weight: float = 0.25
    dist_map_weight: float = 0.25
    ca_bond_weight: float = 0.0  # consecutive-Cα distance error at every t (Å²; what the Cα break check judges)
    ca_bond_max_nm: float = 4.2 * NM_PER_ANGSTROM  # true Cα-Cα below this: a peptide bond (longer: a chain gap)
    ca_clash_weight: float = 0.0  # Cα pairs |i - j| >= 2 closer than the floor below, at every t (Å² per residue)
    ca_clash_floor_nm: float = 3.8 * NM_PER_ANGSTROM  # or the true distance where that is shorter
    ca_rg_weight: float = 0.0  # Cα radius-of-gyration error at every t (Å²; rollouts that compact shrink it)
    ca_x0_weight: float = 0.0  # Cα x̂₀ squared error at every t (Å²): a floor under the score loss's SNR weight
    low_t_threshold: float = 0.25  # bb_coord and dist_map only for t <= this
    ca_bond_max_t: float = 1.0  # ca_bond only for t <= this (1: every t)
    ca_clash_max_t: float = 1.0  # ca_clash only for t <= this
    ca_rg_max_t: float = 1.0  # ca_rg only for t <= this
    fape_max_t: float = 1.0  # bb_fape and sc_fape only for t <= this (1: every t, the paper's)
    torsion_norm_weight: float = 0.02  # AF2 angle-norm term inside the torsion loss
    fape_clamp_nm: float = 10.0 * NM_PER_ANGSTROM
    fape_length_scale_nm: float = 10.0 * NM_PER_ANGSTROM
    fape_eps_nm2: float = 1e-4 * NM_PER_ANGSTROM**2  # AF2's 1e-4 Å² inside the square root
    dist_map_cutoff_nm: float = 6.0 * NM_PER_ANGSTROM

    def validate(self) -> "LossConfig":
        for name, value in vars(self).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"LossConfig.{name} must be a number, got {type(value).__name__}")
            if value < 0:
                raise ValueError(f"LossConfig.{name} must be >= 0, got {value}")
        for name in ("fape_clamp_nm", "fape_length_scale_nm", "dist_map_cutoff_nm", "ca_bond_max_nm",
                     "ca_clash_floor_nm"):
            if getattr(self, name) <= 0:
                raise ValueError(f"LossConfig.{name} must be > 0, got {getattr(self, name)}")
        return self

    def weights(self) -> Dict[str, float]:
        return {"rot_score": self.rot_score_weight, "trans_score": self.trans_score_weight, "torsion": self.torsion_weight,
                "bb_fape": self.bb_fape_weight, "sc_fape": self.sc_fape_weight, "bb_coord": self.bb_coord_weight,
                "dist_map": self.dist_map_weight, "ca_bond": self.ca_bond_weight, "ca_clash": self.ca_clash_weight,
                "ca_rg": self.ca_rg_weight, "ca_x0": self.ca_x0_weight}


class Prediction(NamedTuple):
    """Network output for the target frames: rots ``[B, F, N, 3, 3]``, trans ``[B, F, N, 3]`` nm,
    torsions (unit) and torsions_raw ``[B, F, N, 7, 2]``."""

    rots: torch.Tensor
    trans: torch.Tensor
    torsions: torch.Tensor
    torsions_raw: torch.Tensor


class Target(NamedTuple):
    """Truth for the target frames: rots_0 ``[B, F, N, 3, 3]``, trans_0 ``[B, F, N, 3]`` (centred, nm),
    noisy inputs rots_t / trans_t, t ``[B, F]``, torsions / torsions_alt ``[B, F, N, 7, 2]``,
    torsion_mask ``[B, N, 7]``, residue_mask ``[B, N]``, aatype ``[B, N]``."""

    rots_0: torch.Tensor
    trans_0: torch.Tensor
    rots_t: torch.Tensor
    trans_t: torch.Tensor
    t: torch.Tensor
    torsions: torch.Tensor
    torsions_alt: torch.Tensor
    torsion_mask: torch.Tensor
    residue_mask: torch.Tensor
    aatype: torch.Tensor


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, dims) -> torch.Tensor:
    """Sum of ``x * mask`` over ``dims`` divided by the mask's sum (at least 1e-8)."""
    return (x * mask).sum(dims) / mask.expand_as(x).sum(dims).clamp_min(1e-8)


# --------------------------------------------------------------------------- score terms
def score_losses(diffuser: SE3Diffuser, pred_rots: torch.Tensor, pred_trans: torch.Tensor, target: Target
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised rotation and translation score errors per frame ``[B, F]`` each.

    Both scores are those of p(x_t | x̂_0) at the noisy input; the truth uses x_0. Zero when the
    prediction equals the truth."""
    mask = target.residue_mask[:, None].expand(target.t.shape + target.residue_mask.shape[-1:])  # [B, F, N]
    rot_hat, trans_hat = diffuser.scores(target.rots_t, target.trans_t, pred_rots, pred_trans, target.t, mask)
    rot_true, trans_true = diffuser.scores(target.rots_t, target.trans_t, target.rots_0, target.trans_0, target.t, mask)
    rot_scale = diffuser.rot_score_scaling(target.t).to(pred_trans.dtype)[..., None, None]  # [B, F, 1, 1]
    trans_scale = diffuser.trans_score_scaling(target.t).to(pred_trans.dtype)[..., None, None]
    m = mask[..., None]  # [B, F, N, 1]
    rot = _masked_mean(((rot_hat - rot_true) / rot_scale) ** 2, m, (-2, -1))
    trans = _masked_mean(((trans_hat - trans_true) / trans_scale) ** 2, m, (-2, -1))
    return rot, trans


# --------------------------------------------------------------------------- torsions
def torsion_loss(pred: torch.Tensor, pred_raw: torch.Tensor, truth: torch.Tensor, truth_alt: torch.Tensor,
                 torsion_mask: torch.Tensor, norm_weight: float) -> torch.Tensor:
    """AF2 torsion loss per frame ``[B, F]``.

    pred (unit), pred_raw, truth, truth_alt ``[B, F, N, 7, 2]``; torsion_mask ``[B, N, 7]``."""
    err = torch.minimum(((pred - truth) ** 2).sum(-1), ((pred - truth_alt) ** 2).sum(-1))  # [B, F, N, 7]
    m = torsion_mask[:, None].expand_as(err)
    angle = _masked_mean(err, m, (-2, -1))
    norm = _masked_mean(torch.abs(torch.sqrt((pred_raw**2).sum(-1) + 1e-8) - 1.0), m, (-2, -1))
    return angle + norm_weight * norm


# --------------------------------------------------------------------------- FAPE
def _mat_vec(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (m @ v[..., None])[..., 0]


def _outer_flat(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (u[..., :, None] * v[..., None, :]).flatten(-2)


def fape(pred_rots: torch.Tensor, pred_trans: torch.Tensor, pred_x: torch.Tensor,
         true_rots: torch.Tensor, true_trans: torch.Tensor, true_x: torch.Tensor,
         frame_mask: torch.Tensor, point_mask: torch.Tensor, clamp_nm: float, length_scale_nm: float,
         eps_nm2: float) -> torch.Tensor:
    """Frame-aligned point error ``[...]`` (AF2 Alg. 28).

    Frames rots ``[..., M, 3, 3]``, trans ``[..., M, 3]``; points ``[..., P, 3]`` (nm); masks
    ``[..., M]`` and ``[..., P]``. Every point is expressed in every frame; the distance between
    predicted and true local positions is clamped at ``clamp_nm`` and divided by ``length_scale_nm``.
    Invariant to one rigid motion applied to all predicted frames and points (and to the truth).

    The squared local distance ``|Rp^T (xp - tp) - Rt^T (xt - tt)|^2`` is expanded into one matrix
    product ``[..., M, 34] @ [..., 34, P]`` (frame features times point features; exact, no
    orthonormality assumed), computed in float64 outside autocast because the expansion cancels
    terms of the size of the protein. No tensor of size ``M x P x 3`` is built. Measured on the
    side-chain FAPE of a villin batch (``[4, 7]`` frames of 280 groups x 490 atoms), forward +
    backward, one thread on the loaded 2-core machine: 0.22-0.24 s against 0.40-0.55 s CPU time
    for expressing every point in every frame.
    """
    dtype = pred_x.dtype
    with torch.autocast(device_type=pred_x.device.type, enabled=False):
        pr, pt, px = pred_rots.double(), pred_trans.double(), pred_x.double()
        tr, tt, tx = true_rots.double(), true_trans.double(), true_x.double()
        # centre each side on its points: smaller terms, less cancellation (FAPE is translation invariant)
        p_centre, t_centre = px.mean(-2, keepdim=True), tx.mean(-2, keepdim=True)
        pt, px, tt, tx = pt - p_centre, px - p_centre, tt - t_centre, tx - t_centre
        cross = pr @ tr.transpose(-1, -2)  # [..., M, 3, 3]
        gram_p = pr @ pr.transpose(-1, -2)
        gram_t = tr @ tr.transpose(-1, -2)
        const = ((pt * _mat_vec(gram_p, pt)).sum(-1) + (tt * _mat_vec(gram_t, tt)).sum(-1)
                 - 2.0 * (pt * _mat_vec(cross, tt)).sum(-1))  # [..., M]
        frame_features = torch.cat([gram_p.flatten(-2), gram_t.flatten(-2), -2.0 * cross.flatten(-2),
                                    2.0 * (_mat_vec(cross, tt) - _mat_vec(gram_p, pt)),
                                    2.0 * (_mat_vec(cross.transpose(-1, -2), pt) - _mat_vec(gram_t, tt)),
                                    const[..., None]], dim=-1)  # [..., M, 34]
        point_features = torch.cat([_outer_flat(px, px), _outer_flat(tx, tx), _outer_flat(px, tx), px, tx,
                                    torch.ones_like(px[..., :1])], dim=-1)  # [..., P, 34]
        d2 = (frame_features @ point_features.transpose(-1, -2)).clamp_min(0.0).float()  # [..., M, P]
        d = torch.clamp(torch.sqrt(d2 + eps_nm2), max=clamp_nm) / length_scale_nm
        fm, pm = frame_mask.float(), point_mask.float()
        total = torch.einsum("...mp,...m,...p->...", d, fm, pm)
        count = (fm.sum(-1) * pm.sum(-1)).clamp_min(1e-8)
    return (total / count).to(dtype)


def all_atom(rots: torch.Tensor, trans: torch.Tensor, torsions: torch.Tensor, aatype: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rigid groups and heavy atoms (literature geometry): rots ``[B, F, N, 3, 3]`` ... ->
    group_rots ``[B, F, N, 8, 3, 3]``, group_trans ``[B, F, N, 8, 3]``, atom14 ``[B, F, N, 14, 3]``,
    atom14_mask ``[B, F, N, 14]``."""
    aa = aatype[:, None].expand(trans.shape[:-1])  # [B, F, N]
    group_rots, group_trans = torsion_angles_to_frames(rots, trans, torsions, aa)
    atom14, atom14_mask = frames_to_atom14(group_rots, group_trans, aa)
    return group_rots, group_trans, atom14, atom14_mask


def _group_mask(aatype: torch.Tensor, residue_mask: torch.Tensor) -> torch.Tensor:
    """``[B, N, 8]``: groups that exist (backbone, pre-ω, φ, ψ always; χ groups where defined)."""
    chi = rc.chi_angles_mask.to(residue_mask)[aatype]  # [B, N, 4]
    return torch.cat([torch.ones_like(chi), chi], dim=-1) * residue_mask[..., None]


# --------------------------------------------------------------------------- everything
def compute_losses(diffuser: SE3Diffuser, pred: Prediction, target: Target, cfg: LossConfig) -> Dict[str, torch.Tensor]:
    """All terms (means over the batch) and their weighted sum ``"total"``; 0-d tensors."""
    B, F, N = target.trans_0.shape[:3]
    residue_mask = target.residue_mask  # [B, N]
    rot, trans = score_losses(diffuser, pred.rots, pred.trans, target)
    tors = torsion_loss(pred.torsions, pred.torsions_raw, target.torsions, target.torsions_alt, target.torsion_mask,
                        cfg.torsion_norm_weight)

    # alt truth for symmetric side chains: per residue, the truth torsions the prediction is closer to
    with torch.no_grad():
        chi_err = ((pred.torsions - target.torsions) ** 2).sum(-1)[..., 3:].sum(-1)  # [B, F, N]
        chi_err_alt = ((pred.torsions - target.torsions_alt) ** 2).sum(-1)[..., 3:].sum(-1)
        use_alt = (chi_err_alt < chi_err)[..., None, None]
    true_torsions = torch.where(use_alt, target.torsions_alt, target.torsions)

    p_groups_r, p_groups_t, p_atoms, atom_mask = all_atom(pred.rots, pred.trans, pred.torsions, target.aatype)
    t_groups_r, t_groups_t, t_atoms, _ = all_atom(target.rots_0, target.trans_0, true_torsions, target.aatype)
    frame_mask = residue_mask[:, None].expand(B, F, N)  # [B, F, N]
    bb_fape = fape(pred.rots, pred.trans, pred.trans, target.rots_0, target.trans_0, target.trans_0, frame_mask, frame_mask,
                   cfg.fape_clamp_nm, cfg.fape_length_scale_nm, cfg.fape_eps_nm2)
    group_mask = _group_mask(target.aatype, residue_mask)[:, None].expand(B, F, N, 8).reshape(B, F, N * 8)
    point_mask = (atom_mask * residue_mask[:, None, :, None]).reshape(B, F, N * 14)
    sc_fape = fape(p_groups_r.reshape(B, F, N * 8, 3, 3), p_groups_t.reshape(B, F, N * 8, 3),
                   p_atoms.reshape(B, F, N * 14, 3), t_groups_r.reshape(B, F, N * 8, 3, 3),
                   t_groups_t.reshape(B, F, N * 8, 3), t_atoms.reshape(B, F, N * 14, 3), group_mask, point_mask,
                   cfg.fape_clamp_nm, cfg.fape_length_scale_nm, cfg.fape_eps_nm2)

    # backbone atoms (N, CA, C, O) for the low-t coordinate and distance-map terms
    p_bb = p_atoms[..., :NUM_BACKBONE_ATOMS, :].reshape(B, F, N * NUM_BACKBONE_ATOMS, 3)
    t_bb = t_atoms[..., :NUM_BACKBONE_ATOMS, :].reshape(B, F, N * NUM_BACKBONE_ATOMS, 3)
    bb_mask = residue_mask[:, None, :, None].expand(B, F, N, NUM_BACKBONE_ATOMS).reshape(B, F, N * NUM_BACKBONE_ATOMS)
    bb_coord = _masked_mean(((p_bb - t_bb) ** 2).sum(-1), bb_mask, -1)  # [B, F]
    p_dist = torch.cdist(p_bb, p_bb)
    t_dist = torch.cdist(t_bb, t_bb)
    pair_mask = bb_mask[..., :, None] * bb_mask[..., None, :] * (t_dist < cfg.dist_map_cutoff_nm).to(t_dist)
    eye = torch.eye(pair_mask.shape[-1], dtype=pair_mask.dtype, device=pair_mask.device)
    pair_mask = pair_mask * (1.0 - eye)
    dist_map = _masked_mean((p_dist - t_dist) ** 2, pair_mask, (-2, -1))  # [B, F]
    low_t = (target.t <= cfg.low_t_threshold).to(bb_coord)  # [B, F]
    low_t_frames = low_t.sum().clamp_min(1.0)

    # consecutive Cα distances (residues i, i+1 bonded in the truth), error in Å², every frame and t
    d_pred = torch.linalg.norm(pred.trans[:, :, 1:] - pred.trans[:, :, :-1], dim=-1)  # [B, F, N-1] nm
    d_true = torch.linalg.norm(target.trans_0[:, :, 1:] - target.trans_0[:, :, :-1], dim=-1)
    bonded = (residue_mask[:, None, 1:] * residue_mask[:, None, :-1]) * (d_true < cfg.ca_bond_max_nm).to(d_true)
    ca_bond = _masked_mean(((d_pred - d_true) * ANGSTROM_PER_NM) ** 2, bonded, -1)  # [B, F]

    # Cα x̂₀ error in Å² (mean over present residues, both centred as the score is), every t: the translation
    # score loss is this times a weight that falls with t (SNR weighting), so a weight here sets a floor under it
    frame_residues = residue_mask[:, None].expand(B, F, N)
    err = remove_mean(pred.trans - target.trans_0, frame_residues)
    ca_x0 = _masked_mean(((err * ANGSTROM_PER_NM) ** 2).sum(-1), frame_residues, -1)  # [B, F]

    def up_to(max_t: float) -> torch.Tensor:  # [B, F]: 1 where a term limited to t <= max_t counts
        return (target.t <= max_t).to(ca_bond)

    fape_t = up_to(cfg.fape_max_t)
    terms = {
        "ca_bond": (ca_bond * up_to(cfg.ca_bond_max_t)).mean(),
        "ca_clash": (ca_clash_loss(pred.trans, target.trans_0, residue_mask, cfg.ca_clash_floor_nm) * up_to(cfg.ca_clash_max_t)).mean(),
        "ca_rg": (ca_rg_loss(pred.trans, target.trans_0, residue_mask) * up_to(cfg.ca_rg_max_t)).mean(),
        "ca_x0": ca_x0.mean(),
        "rot_score": rot.mean(), "trans_score": trans.mean(), "torsion": tors.mean(), "bb_fape": (bb_fape * fape_t).mean(),
        "sc_fape": (sc_fape * fape_t).mean(), "bb_coord": (bb_coord * low_t).sum() / low_t_frames,
        "dist_map": (dist_map * low_t).sum() / low_t_frames,
    }
    terms["total"] = sum(w * terms[name] for name, w in cfg.weights().items())
    return terms


def ca_clash_loss(pred_trans: torch.Tensor, true_trans: torch.Tensor, residue_mask: torch.Tensor, floor_nm: float
                  ) -> torch.Tensor:
    """Excluded volume of the predicted Cα atoms ``[B, F, N, 3]`` nm -> ``[B, F]`` Å² per residue.

    Every pair of residues ``|i - j| >= 2`` (chain neighbours are the bond term's) closer than
    ``min(floor, true distance)`` adds the squared shortfall in Å; the sum is divided by the number of
    residues. A prediction that keeps every pair as far apart as the truth, or farther than the
    floor, costs nothing. This is what the Cα clash check judges (a pair under 3.0 Å); MD keeps
    non-neighbour Cα atoms about 3.8 Å or more apart.
    """
    N = pred_trans.shape[-2]
    d_pred = torch.cdist(pred_trans, pred_trans)  # [B, F, N, N] nm
    with torch.no_grad():
        d_true = torch.cdist(true_trans, true_trans)
        idx = torch.arange(N, device=pred_trans.device)
        far = ((idx[:, None] - idx[None, :]).abs() >= 2).to(d_pred)  # [N, N]
        pairs = residue_mask[:, None, :, None] * residue_mask[:, None, None, :] * far  # [B, 1, N, N]
        floor = torch.clamp(d_true, max=floor_nm)
    shortfall = torch.relu(floor - d_pred) * ANGSTROM_PER_NM
    per_frame = 0.5 * (shortfall ** 2 * pairs).sum((-2, -1))  # each pair once
    return per_frame / residue_mask.sum(-1, keepdim=True).clamp_min(1.0)


def ca_radius_of_gyration_nm(trans: torch.Tensor, residue_mask: torch.Tensor) -> torch.Tensor:
    """Radius of gyration of the Cα atoms ``[B, F, N, 3]`` nm over the residues in ``residue_mask``
    ``[B, N]`` -> ``[B, F]`` nm."""
    m = residue_mask[:, None, :, None].to(trans)  # [B, 1, N, 1]
    count = m.sum(-2).clamp_min(1.0)  # [B, 1, 1]
    centre = (trans * m).sum(-2, keepdim=True) / count[..., None]
    sq = (((trans - centre) ** 2) * m).sum((-2, -1)) / count[..., 0]  # [B, F]
    return torch.sqrt(sq + 1e-12)


def ca_rg_loss(pred_trans: torch.Tensor, true_trans: torch.Tensor, residue_mask: torch.Tensor) -> torch.Tensor:
    """Squared error of the predicted Cα radius of gyration ``[B, F, N, 3]`` nm -> ``[B, F]`` Å².

    One number per frame that measures how compact the prediction is against the truth; invariant
    to rotation and translation of either. Rollouts that drift more compact than MD from step to
    step are what this term acts against (the network's x̂₀ at high diffusion time is a conditional
    mean, which is more compact than any one frame).
    """
    err = ca_radius_of_gyration_nm(pred_trans, residue_mask) - ca_radius_of_gyration_nm(true_trans, residue_mask)
    return (err * ANGSTROM_PER_NM) ** 2


def translation_error_nm(pred_trans: torch.Tensor, true_trans: torch.Tensor, residue_mask: Optional[torch.Tensor] = None
                         ) -> torch.Tensor:
    """CA RMSD (no superposition) between prediction and truth ``[B, F, N, 3]`` -> ``[B, F]`` nm, for logs."""
    m = torch.ones(pred_trans.shape[:-1], device=pred_trans.device) if residue_mask is None else residue_mask[:, None].expand(pred_trans.shape[:-1])
    return torch.sqrt(_masked_mean(((pred_trans - true_trans) ** 2).sum(-1), m, -1))


__all__ = ["LossConfig", "Prediction", "Target", "compute_losses", "score_losses", "torsion_loss", "fape", "all_atom",
           "ca_clash_loss", "ca_rg_loss", "ca_radius_of_gyration_nm", "translation_error_nm"]
