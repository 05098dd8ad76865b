"""Training of STAR-MD on MD trajectories.

* :mod:`~openmm_starmd.training.losses`: score, torsion, FAPE, coordinate and distance-map losses.
* :mod:`~openmm_starmd.training.block_causal`: one block-causal pass (contextual noise, Δt conditioning).
* :mod:`~openmm_starmd.training.trainer`: ``TrainConfig`` and ``Trainer`` (optimiser, schedule, EMA,
  checkpoints, log, plot).
* :mod:`~openmm_starmd.training.distributed`: torchrun / DDP set-up.
* :mod:`~openmm_starmd.training.command`: ``starmd train`` (also ``python -m openmm_starmd.training``).
"""
