"""Checkpoints: PySlowFast weights in, our training checkpoints in and out, downloads cached and verified.

Modules: ``c2_names`` (Caffe2 blob name <-> parameter name, pure rename functions), ``loading`` (reading any
supported file safely, the strict :func:`load_weights` with its :class:`LoadReport`, our own
:func:`save_checkpoint` / :func:`load_checkpoint` with RNG state), ``cache`` (local paths or URLs resolved into a
download cache with sha256 checks).
"""

from slowfast_det.checkpoint.c2_names import c2_to_pytorch_name, is_c2_bookkeeping_blob, pytorch_to_c2_name
from slowfast_det.checkpoint.loading import (
    CheckpointError,
    LoadReport,
    capture_rng_state,
    load_checkpoint,
    load_weights,
    read_checkpoint_file,
    restore_rng_state,
    save_checkpoint,
)

__all__ = [
    "CheckpointError",
    "LoadReport",
    "c2_to_pytorch_name",
    "capture_rng_state",
    "is_c2_bookkeeping_blob",
    "load_checkpoint",
    "load_weights",
    "pytorch_to_c2_name",
    "read_checkpoint_file",
    "restore_rng_state",
    "save_checkpoint",
]
