"""Fine-tuning a pruned VGG-19 by distillation from the dense one.

The teacher is the dense network, frozen. The student is the pruned network; its weights
(not an image, as in the seed) are trained so that at every layer the style and content
losses read, its activations and their Gram matrices match the teacher's:

    loss = feature_weight * mean_l |S_l - T_l|^2 / |T_l|^2  +  gram_weight * mean_l |G(S_l) - G(T_l)|^2 / |G(T_l)|^2

Each term is normalised by the teacher's energy at that layer, so shallow and deep layers
(whose activations differ in scale by orders of magnitude) count alike, and the value reads
as a relative squared error (0 = identical to the teacher).

``FinetuneConfig(objective="gradient")`` trains for what a loss network is used for instead: on
content/style mixes of the step's crops, the student's image gradient of the preset's whole
style-transfer loss is pulled towards the dense network's (:func:`gradient_matching_loss`, about twice
the time per step; one process only). On the trained VGG-16 it did not beat distillation at equal
time (``bench/bench_finetune_objective.py``, docs/finetune.md), so distillation stays the default.

* A structured student kept only some output channels of each conv; it is matched against
  the teacher's activations at exactly those channels (``student.kept_channels``).
* A fine-grained student keeps its masks exactly: gradients of pruned weights are zeroed
  before every Adam step (so Adam's moment estimates for them stay zero and never revive
  them), and the masks are re-applied after every step (``nst_core.compress.pruning.apply_masks``).

Training is resumable: the batch of a step is a pure function of (seed, step)
(``nst_core.compress.calibration.CropSampler``) and the learning rate a pure function of the step, so
a state file holding the student's weights, Adam's state and the step count is enough for an
interrupted run to finish with the same weights as an uninterrupted one.

Training scales out under ``torchrun`` (``torch.distributed`` initialised, see ``Ranks``): the
student is wrapped in DistributedDataParallel, each rank distils its equal share of the step's
batch, and only rank 0 writes the state. Each loss term is a squared error (a mean over the
batch, so the ranks' average is the whole batch's) divided by the teacher's energy; the energy
is averaged over the ranks before dividing, so DDP's averaged gradient is the whole batch's
gradient and N ranks follow the single-process run up to floating-point summation order.

The parts, each importing only those above it:

- :mod:`.distill`: the loss (:func:`distillation_terms`, :func:`teacher_at_kept_channels`), and the
  loss-network objective :func:`image_gradient_error` (image gradients of the style-transfer loss);
- :mod:`.ranks`: :class:`Ranks` and :func:`process_group_from_env` (``torchrun``);
- :mod:`.masks`: a fine-grained student's pruned weights stay zero through training;
- :mod:`.config`: :class:`FinetuneConfig` and :func:`learning_rate`;
- :mod:`.state`: the resumable state file (:func:`load_state`);
- :mod:`.loop`: :func:`train`, the training loop;
- :mod:`.recovery`: :class:`RecoveryMeter`, :func:`distortion`, :func:`recovery_table`;
- :mod:`.job`: :func:`finetune`, measure + train + measure, recorded in the student's provenance.

May import: ``core``, ``model``, ``image``, ``nst`` and, in ``compress``, pruning and calibration.
"""

from nst_core.compress.finetune.config import METHODS, OBJECTIVES, SCHEDULES, FinetuneConfig, learning_rate
from nst_core.compress.finetune.distill import (
    DistillWeights,
    distillation_terms,
    gradient_matching_loss,
    image_gradient_error,
    relative_error,
    teacher_at_kept_channels,
)
from nst_core.compress.finetune.job import FinetuneResult, finetune
from nst_core.compress.finetune.loop import prepare_student, train
from nst_core.compress.finetune.masks import check_masks, zero_pruned_gradients
from nst_core.compress.finetune.ranks import Ranks, process_group_from_env
from nst_core.compress.finetune.recovery import (
    TABLE_ROWS,
    RecoveryConfig,
    RecoveryMeter,
    checkpoint_metrics,
    distortion,
    recovery_table,
)
from nst_core.compress.finetune.state import STATE_VERSION, TrainResult, load_state, run_fingerprint

__all__ = [
    "OBJECTIVES",
    "SCHEDULES",
    "STATE_VERSION",
    "TABLE_ROWS",
    "DistillWeights",
    "METHODS",
    "FinetuneConfig",
    "FinetuneResult",
    "Ranks",
    "RecoveryConfig",
    "RecoveryMeter",
    "TrainResult",
    "check_masks",
    "checkpoint_metrics",
    "distillation_terms",
    "distortion",
    "finetune",
    "gradient_matching_loss",
    "image_gradient_error",
    "learning_rate",
    "load_state",
    "prepare_student",
    "process_group_from_env",
    "recovery_table",
    "relative_error",
    "run_fingerprint",
    "teacher_at_kept_channels",
    "train",
    "zero_pruned_gradients",
]
