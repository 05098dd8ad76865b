"""Configuration of the SE(3) diffusion (SPEC §3) and its presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# IGSO(3) rotation scales the tables support: below SIGMA_FLOOR the l-series needs thousands of
# terms; above SIGMA_CEILING four images per side no longer make the image sum exact to fp64.
SIGMA_FLOOR = 0.01
SIGMA_CEILING = 3.0


@dataclass
class DiffusionConfig:
    """Schedules, table resolution and sampler defaults of the SE(3) diffuser.

    Translations follow a VP-SDE with beta(t) = trans_beta_min + t (trans_beta_max - trans_beta_min)
    on coordinates ``trans_nm * trans_scale_per_nm``; rotations follow IGSO(3) with the logarithmic
    schedule sigma(t) = log(t e^{rot_sigma_max} + (1 - t) e^{rot_sigma_min}) (radians).
    """

    trans_beta_min: float = 0.1
    trans_beta_max: float = 20.0
    # Diffusion coordinates per nanometre. 1.0 = nm, which is ConfRover's "angstrom * 0.1".
    trans_scale_per_nm: float = 1.0
    rot_sigma_min: float = 0.1
    rot_sigma_max: float = 1.5
    igso3_num_sigma: int = 500  # sigma grid of the IGSO(3) tables, uniform on [rot_sigma_min, rot_sigma_max]
    igso3_num_omega: int = 1000  # rotation-angle grid, uniform on [0, pi]
    t_min: float = 0.01  # the reverse sampler stops here
    num_steps: int = 200  # network evaluations per generated frame (timesteps from 1.0 to t_min)
    ode: bool = False  # default sampler: False = Euler-Maruyama reverse SDE, True = probability-flow ODE
    noise_scale: float = 1.0  # multiplies the stochastic term of the reverse SDE

    def validate(self) -> "DiffusionConfig":
        """Raise ``TypeError``/``ValueError`` naming the first bad field; return ``self``."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise TypeError(f"DiffusionConfig.{f.name} must be a bool, got {type(value).__name__}")
            if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"DiffusionConfig.{f.name} must be an int, got {type(value).__name__}")
            if f.type == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise TypeError(f"DiffusionConfig.{f.name} must be a float, got {type(value).__name__}")
        if not 0.0 < self.trans_beta_min < self.trans_beta_max:
            raise ValueError(
                "DiffusionConfig needs 0 < trans_beta_min < trans_beta_max, "
                f"got trans_beta_min={self.trans_beta_min}, trans_beta_max={self.trans_beta_max}"
            )
        if not self.trans_scale_per_nm > 0.0:
            raise ValueError(f"DiffusionConfig.trans_scale_per_nm must be > 0, got {self.trans_scale_per_nm}")
        if not SIGMA_FLOOR <= self.rot_sigma_min < self.rot_sigma_max <= SIGMA_CEILING:
            raise ValueError(
                f"DiffusionConfig needs {SIGMA_FLOOR} <= rot_sigma_min < rot_sigma_max <= {SIGMA_CEILING}, "
                f"got rot_sigma_min={self.rot_sigma_min}, rot_sigma_max={self.rot_sigma_max}"
            )
        if self.igso3_num_sigma < 2:
            raise ValueError(f"DiffusionConfig.igso3_num_sigma must be >= 2, got {self.igso3_num_sigma}")
        if self.igso3_num_omega < 16:
            raise ValueError(f"DiffusionConfig.igso3_num_omega must be >= 16, got {self.igso3_num_omega}")
        if not 0.0 < self.t_min < 1.0:
            raise ValueError(f"DiffusionConfig.t_min must lie in (0, 1), got {self.t_min}")
        if self.num_steps < 2:
            raise ValueError(f"DiffusionConfig.num_steps must be >= 2, got {self.num_steps}")
        if not self.noise_scale >= 0.0:
            raise ValueError(f"DiffusionConfig.noise_scale must be >= 0, got {self.noise_scale}")
        return self


def paper() -> DiffusionConfig:
    """SPEC §3 / FrameDiff-ConfRover values: 200 Euler-Maruyama steps from t = 1 to 0.01."""
    return DiffusionConfig().validate()


def fast() -> DiffusionConfig:
    """Same process, coarser sampler (50 steps) and sigma grid: for tests and quick previews."""
    return DiffusionConfig(num_steps=50, igso3_num_sigma=128).validate()
