"""Which frames make a keyframe's clip, and how a clip is split into SlowFast pathways (PySlowFast's rules).

Frame indices are 0-based positions in a video's frame list (file ``{vid}_{k:06d}.jpg`` is index ``k - 1``).
"""

from __future__ import annotations

import numpy as np
import torch

from ava_tools.timeline import keyframe_center_index

__all__ = [
    "clip_frame_indices",
    "keyframe_center_index",  # re-exported from ava_tools.timeline
    "pack_pathways",
    "slow_pathway_indices",
]



def clip_frame_indices(center: int, *, num_frames: int, sampling_rate: int, video_frames: int) -> np.ndarray:
    """Frame indices of the clip centred on ``center``, clamped to the video (PySlowFast's ``get_sequence``).

    Indices are ``range(center - L//2, center + L//2, sampling_rate)`` with
    ``L = num_frames * sampling_rate``, so the keyframe is element ``num_frames // 2``; indices before
    the first / after the last frame repeat frame 0 / frame ``video_frames - 1``.

    Returns:
        (num_frames,) int64 array (fewer elements only if ``L`` is odd, as in PySlowFast).
    """
    if video_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {video_frames}")
    half = (num_frames * sampling_rate) // 2
    seq = np.arange(center - half, center + half, sampling_rate, dtype=np.int64)
    return np.clip(seq, 0, video_frames - 1)


def slow_pathway_indices(num_frames: int, alpha: int) -> torch.Tensor:
    """Fast-pathway frame positions kept by the slow pathway: ``linspace(0, T-1, T // alpha).long()``.

    Computed with ``torch.linspace`` in float32 and truncated, exactly as PySlowFast (T=32, alpha=4 gives
    0, 4, 8, 13, 17, 22, 26, 31).
    """
    return torch.linspace(0, num_frames - 1, num_frames // alpha).long()


def pack_pathways(clip: torch.Tensor, *, alpha: int | None) -> list[torch.Tensor]:
    """Split a (C, T, H, W) clip into the model's pathway inputs.

    Args:
        clip: (C, T, H, W) tensor (the fast pathway).
        alpha: SlowFast's temporal ratio (SLOWFAST.ALPHA); None for single-pathway models (Slow, C2D, I3D).

    Returns:
        ``[slow (C, T//alpha, H, W), fast (C, T, H, W)]`` for SlowFast, else ``[clip]``.
    """
    if alpha is None:
        return [clip]
    if clip.shape[1] < alpha:
        raise ValueError(f"a clip of {clip.shape[1]} frames is shorter than SLOWFAST.ALPHA={alpha}")
    slow = torch.index_select(clip, 1, slow_pathway_indices(clip.shape[1], alpha))
    return [slow, clip]
