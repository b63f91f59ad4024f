"""What decides a release's files (:class:`ReleaseSettings`), and the settings of each stage it derives."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from nst_core.compress.budget import PROXY_LEVELS
from nst_core.compress.finetune import FinetuneConfig, RecoveryConfig
from nst_core.compress.importance import CRITERIA, DEFAULT_CRITERION
from nst_core.compress.scan.config import ScanConfig
from nst_core.core.errors import UserError
from nst_core.model.checkpoint import STORED_DTYPES, check_storage
from nst_core.nst.losses import get_preset
from nst_core.nst.stylize import StylizeConfig


@dataclass
class ReleaseSettings:
    """Everything that decides a release's files (the device and the push target do not)."""

    weights: str
    target_speedup: float
    images: str | None = None  # calibration folder; None: the bundled examples
    preset: str = "seed"
    pooling: str = "max"
    preprocessing: str | None = None
    full_scan: bool = False  # stylize and judge every scan cell instead of the proxy
    scan_size: int = 128
    scan_iterations: int = 50  # full scan only
    levels: list[float] = field(default_factory=lambda: list(PROXY_LEVELS))
    #: activation: the best criterion on trained weights (docs/real-weights-pruning.md: at 3x fewer MACs the
    #: budgeted network's judged style loss is 4.4x dense with it, 17x with l1, 20x with taylor)
    importance: str = DEFAULT_CRITERION
    cost_size: int = 512  # the image size the budget's MACs are counted at
    calibration_size: int = 128
    uniform_fraction: float = 0.5  # the uniform L1 baseline: this fraction of every conv's filters removed
    # The fine-tune's defaults are FinetuneConfig's (one place decides them for nst finetune and nst release).
    steps: int = FinetuneConfig.steps
    batch_size: int = FinetuneConfig.batch_size
    crop_size: int = FinetuneConfig.crop_size
    lr: float = FinetuneConfig.lr
    objective: str = FinetuneConfig.objective
    layers: list[str] | None = None  # distilled layers; None: the preset's
    checkpoint_every: int = FinetuneConfig.checkpoint_every
    heldout: int = 2
    eval_size: int = 256
    judge_size: int = 128
    judge_iterations: int = 50
    dtype: str = "int8"  # on trained VGG-16: judged content 1.0001x, style 1.0025x fp32's, half fp16's bytes
    seed: int = 0
    max_side: int = 512  # calibration images are loaded at most this large
    measure_iterations: int = 2  # 0: do not measure the speedup

    def validate(self) -> None:
        """A UserError naming the first unusable setting (before any work)."""
        if not self.target_speedup > 1:
            raise UserError(f"--target-speedup must be above 1, not {self.target_speedup}")
        if self.importance not in CRITERIA:
            raise UserError(f"--importance must be one of {', '.join(CRITERIA)}, not {self.importance!r}")
        if self.dtype not in STORED_DTYPES:
            raise UserError(f"--dtype must be one of {', '.join(STORED_DTYPES)}, not {self.dtype!r}")
        check_storage("packed", self.dtype)
        if not 0 < self.uniform_fraction < 1:
            raise UserError(f"--uniform-fraction must be between 0 and 1, not {self.uniform_fraction}")
        for name, value, low in (
            ("--scan-size", self.scan_size, 16),
            ("--cost-size", self.cost_size, 16),
            ("--calibration-size", self.calibration_size, 16),
            ("--measure-iterations", self.measure_iterations, 0),
            ("--scan-iterations", self.scan_iterations, 1),
        ):
            if value < low:
                raise UserError(f"{name} must be at least {low}, not {value}")
        if not self.levels or any(not 0 < level < 1 for level in self.levels):
            raise UserError(f"--levels must be fractions between 0 and 1, not {self.levels}")
        get_preset(self.preset)
        self.finetune_config().validate()
        self.scan_config(["content.png"], ["style.png"]).stylize.validate()

    def finetune_config(self) -> FinetuneConfig:
        """The fine-tuning stage's settings."""
        return FinetuneConfig(
            preset=self.preset,
            layers=self.layers,
            steps=self.steps,
            batch_size=self.batch_size,
            crop_size=self.crop_size,
            lr=self.lr,
            objective=self.objective,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
        )

    def recovery_config(self) -> RecoveryConfig:
        """How candidates are measured on the held-out images."""
        return RecoveryConfig(
            preset=self.preset,
            distortion_size=self.eval_size,
            stylize_size=self.judge_size,
            stylize_iterations=self.judge_iterations,
            seed=self.seed,
        )

    def scan_config(self, content: list[str], styles: list[str]) -> ScanConfig:
        """The scan stage's grid: every conv the preset needs, structured, at ``levels``, filters ranked as
        the budget ranks them."""
        return ScanConfig(
            content=content[0],
            styles=styles,
            weights=self.weights,
            method="structured",
            mode="full" if self.full_scan else "proxy",
            sparsities=list(self.levels),
            importance=self.importance,
            stylize=StylizeConfig(
                preset=self.preset, size=self.scan_size, iterations=self.scan_iterations, seed=self.seed
            ),
            pooling=self.pooling,
            preprocessing=self.preprocessing,
        )

    def to_dict(self) -> dict:
        """JSON-ready settings."""
        return asdict(self)
