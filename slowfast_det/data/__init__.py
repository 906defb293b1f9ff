"""AVA data: keyframe clips at PySlowFast fidelity (frame lists or videos), transforms, collate.

Modules: ``clips`` (frame indices, pathways), ``transforms`` (resize/crop/flip/colour/normalise with boxes),
``annotations`` (frame lists, boxes and labels per keyframe), ``ava`` (the dataset, collate, batch sampler).
"""

from slowfast_det.data.ava import AvaDataset, FrameReadError, SampleError, VideoBatchSampler, ava_collate
from slowfast_det.data.clips import clip_frame_indices, keyframe_center_index, pack_pathways
from slowfast_det.data.transforms import preprocess_clip_test, preprocess_clip_train, preprocess_clip_val

__all__ = [
    "AvaDataset",
    "FrameReadError",
    "SampleError",
    "VideoBatchSampler",
    "ava_collate",
    "clip_frame_indices",
    "keyframe_center_index",
    "pack_pathways",
    "preprocess_clip_test",
    "preprocess_clip_train",
    "preprocess_clip_val",
]
