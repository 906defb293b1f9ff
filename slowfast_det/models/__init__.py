"""SlowFast / Slow video backbones with the AVA RoI head or the Kinetics clip head (PySlowFast-compatible).

``build_model(cfg)`` builds the model a config describes; ``slowfast_det.checkpoint.loading.load_weights`` loads
PySlowFast (Caffe2 ``.pkl``, ``.pyth``) or slowfast_det checkpoints into it.
"""

from slowfast_det.models.heads import ClipHead, RoIHead
from slowfast_det.models.slowfast import (
    STAGE_DEPTHS,
    SlowFast,
    build_model,
    count_gflops,
    freeze_bn,
    init_weights,
)

__all__ = [
    "ClipHead",
    "RoIHead",
    "STAGE_DEPTHS",
    "SlowFast",
    "build_model",
    "count_gflops",
    "freeze_bn",
    "init_weights",
]
