"""The exportable STAR-MD core: network + SE(3) diffuser + singles-only KV cache + sampler loop.

Everything here is TorchScript-compatible (``torch.jit.script(StarMDCore(cfg))``); the scripted
file is what ``starmd export`` writes and what the C++ plugin runs. Randomness comes from torch's
global generator in a fixed order, so eager and scripted runs agree for the same seed.

Generation of one frame (SPEC §5): draw the prior, run ``num_steps`` reverse-diffusion steps in
which the frame's N tokens attend to the cache plus themselves, keep the last x̂_0, then noise it
to ``context_noise_t``, run it once as a clean frame and append its keys/values to the cache.
"""

from typing import List, Optional, Tuple

import torch
from torch import nn

from openmm_starmd.diffusion import SE3Diffuser
from openmm_starmd.model.config import StarMDConfig
from openmm_starmd.model.starmd import StarMD


class StarMDCore(nn.Module):
    k_caches: List[torch.Tensor]
    v_caches: List[torch.Tensor]
    fill: int
    window_frames: int
    sink_frames: int
    num_frames: int
    capacity_frames: int

    def __init__(self, cfg: StarMDConfig):
        super().__init__()
        cfg.validate()
        self.net = StarMD(cfg)
        self.diffuser = SE3Diffuser(cfg.diffusion)
        self.num_st_layers = cfg.st_layers
        self.st_heads = cfg.st_heads
        self.st_head_dim = cfg.st_head_dim
        self.context_noise_t = cfg.context_noise_t
        self.default_capacity = cfg.max_frames
        self.window_frames = 0  # frames each generated or appended frame attends to, itself included (0: all)
        self.sink_frames = 0  # first frames a windowed frame attends to as well (attention sinks)
        self.stride_min_ns = cfg.stride_min_ns
        self.stride_max_ns = cfg.stride_max_ns
        # rollout state (not parameters; reset by start())
        self.k_caches: List[torch.Tensor] = []
        self.v_caches: List[torch.Tensor] = []
        self.fill = 0
        self.num_frames = 0
        self.capacity_frames = 0
        self.s_seq = torch.zeros(0)
        self.z_static = torch.zeros(0)
        self.aatype = torch.zeros(0, dtype=torch.long)
        self.residue_index = torch.zeros(0, dtype=torch.long)
        # the last context frame as given (before context noise): the template of the next frame
        # for a model with template inputs
        self.template_rots = torch.zeros(0)
        self.template_trans = torch.zeros(0)
        # the context frame before it (the motion input of a model with context_motion)
        self.prev_rots = torch.zeros(0)
        self.prev_trans = torch.zeros(0)

    @torch.jit.export
    def start(
        self,
        aatype: torch.Tensor,
        residue_index: torch.Tensor,
        chain_index: torch.Tensor,
        capacity_frames: int,
        openfold_single: Optional[torch.Tensor] = None,
        openfold_pair: Optional[torch.Tensor] = None,
    ) -> None:
        """Begin a rollout of B replicas of one protein: aatype, residue_index, chain_index ``[B, N]``.

        Preallocates one key and one value cache ``[B, H, capacity_frames·N, D]`` per S×T layer."""
        B, N = aatype.shape[0], aatype.shape[1]
        dtype = self.net.torsion_head[1].weight.dtype
        device = self.net.torsion_head[1].weight.device
        with torch.no_grad():
            self.s_seq, self.z_static = self.net.embed_protein(aatype, residue_index, chain_index, openfold_single, openfold_pair)
        self.aatype = aatype
        self.residue_index = residue_index
        shape = [B, self.st_heads, capacity_frames * N, self.st_head_dim]
        self.k_caches = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(self.num_st_layers)]
        self.v_caches = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(self.num_st_layers)]
        self.fill = 0
        self.num_frames = 0
        self.capacity_frames = capacity_frames
        self.template_rots = torch.zeros(0)
        self.template_trans = torch.zeros(0)
        self.prev_rots = torch.zeros(0)
        self.prev_trans = torch.zeros(0)

    @torch.jit.export
    def set_window(self, frames: int) -> None:
        """Attend to at most ``frames`` frames (the last ``frames - 1`` context frames and the frame
        itself), as in training with context length L = ``frames``; 0 attends to the whole history."""
        if frames < 0 or frames == 1:
            raise ValueError("the context window must be 0 (whole history) or at least 2 frames")
        self.window_frames = frames

    @torch.jit.export
    def set_sink(self, frames: int) -> None:
        """With a context window, attend also to the first ``frames`` frames of the rollout (its
        given context: attention sinks, as in the windowed ConfRover baseline of the paper);
        0: the window alone. No effect on a whole-history rollout."""
        if frames < 0:
            raise ValueError("the number of sink frames must be >= 0")
        self.sink_frames = frames

    def cache_start(self, num_res: int) -> int:
        if self.window_frames <= 0:
            return 0
        start = max(0, self.fill - (self.window_frames - 1) * num_res)
        return 0 if start <= self.sink_frames * num_res else start

    def sink_end(self, num_res: int) -> int:
        return self.sink_frames * num_res if self.window_frames > 0 else 0

    @torch.jit.export
    def cache_bytes(self) -> int:
        """Bytes held by the preallocated K and V caches (all layers)."""
        total = 0
        for k in self.k_caches:
            total += k.numel() * k.element_size()
        for v in self.v_caches:
            total += v.numel() * v.element_size()
        return total

    def _run(self, rots: torch.Tensor, trans: torch.Tensor, t: float, log10_stride_ns: torch.Tensor, append: bool,
             template_rots: torch.Tensor, template_trans: torch.Tensor, prev_rots: torch.Tensor, prev_trans: torch.Tensor
             ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One network call on one frame; ``prev_rots``/``prev_trans`` empty: its template has no frame before it."""
        B = trans.shape[0]
        tt = torch.full([B, 1], t, dtype=trans.dtype, device=trans.device)
        frame_index = torch.full([1], self.num_frames, dtype=torch.long, device=trans.device)
        has_prev = torch.full([B, 1], 1.0 if prev_trans.numel() > 0 else 0.0, dtype=trans.dtype, device=trans.device)
        if prev_trans.numel() == 0:
            prev_rots, prev_trans = template_rots, template_trans
        r0, x0, tors, _ = self.net.forward_frames(self.s_seq, self.z_static, self.aatype, self.residue_index,
                                                  rots[:, None], trans[:, None], tt, log10_stride_ns, frame_index,
                                                  None, self.k_caches, self.v_caches, self.fill, append,
                                                  template_rots[:, None], template_trans[:, None], self.cache_start(trans.shape[1]),
                                                  self.sink_end(trans.shape[1]), prev_rots[:, None], prev_trans[:, None], has_prev)
        return r0[:, 0], x0[:, 0], tors[:, 0]

    @torch.jit.export
    def append_frame(self, rots: torch.Tensor, trans: torch.Tensor, log10_stride_ns: torch.Tensor, noise_t: float) -> None:
        """Add a finished frame (rots ``[B, N, 3, 3]``, trans ``[B, N, 3]`` nm) to the context: noise it
        to ``noise_t``, run it once as a clean frame and write its keys/values to the cache."""
        if self.num_frames >= self.capacity_frames:
            raise RuntimeError("KV cache is full: start() the rollout with a larger capacity_frames")
        N = trans.shape[1]
        trans = trans - trans.mean(dim=1, keepdim=True)  # centred, as training centres every frame
        clean_rots, clean_trans = rots, trans
        with torch.no_grad():
            if noise_t > 0.0:
                rots, trans = self.diffuser.forward_marginal(rots, trans, torch.full([trans.shape[0]], noise_t, device=trans.device))
            # its own clean template, and the context frame before it
            self._run(rots, trans, noise_t, log10_stride_ns, True, clean_rots, clean_trans, self.template_rots, self.template_trans)
        self.prev_rots = self.template_rots
        self.prev_trans = self.template_trans
        self.template_rots = clean_rots
        self.template_trans = clean_trans
        self.fill += N
        self.num_frames += 1

    @torch.jit.export
    def denoise(self, rots_t: torch.Tensor, trans_t: torch.Tensor, t: float, log10_stride_ns: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One network evaluation for the frame being generated: x̂_0 frames and torsions.
        Uses the cache slot after the finished frames as scratch (needs capacity for one more frame)."""
        if self.num_frames >= self.capacity_frames:
            raise RuntimeError("KV cache is full: start() the rollout with a larger capacity_frames")
        with torch.no_grad():
            if self.num_frames == 0:  # no context yet (timing runs): the frame is its own template
                return self._run(rots_t, trans_t, t, log10_stride_ns, False, rots_t, trans_t, torch.zeros(0), torch.zeros(0))
            return self._run(rots_t, trans_t, t, log10_stride_ns, False, self.template_rots, self.template_trans,
                             self.prev_rots, self.prev_trans)

    @torch.jit.export
    def sample_frame(self, log10_stride_ns: torch.Tensor, num_steps: int, ode: bool, noise_scale: float,
                     time_spacing: float, noise_switch_t: float,
                     ode_noise: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Generate the next frame by the reverse SDE (or ODE) with ``num_steps`` network calls at
        ``diffuser.timesteps(num_steps, time_spacing)``. SDE: steps from t > ``noise_switch_t`` take
        the exact SDE (noise scale 1), the others ``noise_scale`` (``noise_switch_t`` 1.0:
        ``noise_scale`` at every step). ODE: every step adds noise ``ode_noise`` with the drift that
        keeps the data's marginals (0: the probability-flow ODE; ``noise_scale`` and
        ``noise_switch_t`` are unused).

        Returns x̂_0 of the last step: rots ``[B, N, 3, 3]``, trans ``[B, N, 3]`` (centred, nm) and
        torsions ``[B, N, 7, 2]``."""
        B, N = self.aatype.shape[0], self.aatype.shape[1]
        if self.num_frames == 0:
            raise RuntimeError("sample_frame needs at least one context frame: call append_frame first")
        if self.num_frames >= self.capacity_frames:
            raise RuntimeError("KV cache is full: start() the rollout with a larger capacity_frames")
        rots, trans = self.diffuser.sample_prior([B, N], None, self.s_seq.device)
        ts = self.diffuser.timesteps(num_steps, time_spacing)
        r0 = rots
        x0 = trans
        tors = torch.zeros([B, N, 7, 2], device=trans.device)
        for i in range(num_steps):
            t = float(ts[i])
            r0, x0, tors = self.denoise(rots, trans, t, log10_stride_ns)
            if i + 1 < num_steps:
                dt = t - float(ts[i + 1])
                z_rot = torch.randn([B, N, 3], device=trans.device)
                z_trans = torch.randn([B, N, 3], device=trans.device)
                step_noise = ode_noise if ode else (1.0 if t > noise_switch_t else noise_scale)
                rots, trans = self.diffuser.reverse_step(rots, trans, r0, x0, t, dt, z_rot, z_trans, ode, step_noise)
        return r0, x0, tors

    @torch.jit.export
    def step(self, log10_stride_ns: torch.Tensor, num_steps: int, ode: bool, noise_scale: float,
             time_spacing: float, noise_switch_t: float, ode_noise: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Generate the next frame and append it to the context (the whole jump)."""
        r0, x0, tors = self.sample_frame(log10_stride_ns, num_steps, ode, noise_scale, time_spacing, noise_switch_t, ode_noise)
        self.append_frame(r0, x0, log10_stride_ns, self.context_noise_t)
        return r0, x0, tors

    def forward(self, log10_stride_ns: torch.Tensor, num_steps: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.step(log10_stride_ns, num_steps, False, 1.0, 1.0, 1.0, 0.0)
