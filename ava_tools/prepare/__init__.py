"""Prepare AVA videos the PySlowFast way: cut to [900 s, 1801 s) and extract JPEG frames at 30 fps.

Layout written (PySlowFast's ``DATASET.md``)::

    FRAMES/{video_id}/{video_id}_000001.jpg, _000002.jpg, ...   (numbered from 1)
    FRAME_LIST.csv    "original_vido_id video_id frame_id path labels", space separated

Timeline convention, used end to end: output frame file k (1-based) shows source time
``start_sec + (k - 1) / fps``; its 0-based index in the frame list is ``k - 1``; PySlowFast maps keyframe
second ``s`` to 0-based index ``(s - 900) * 30``, i.e. file ``(s - 900) * 30 + 1``.

Resuming: each finished video folder gets a marker file (written last) that records the source's
size, a hash of its first and last MiB, and the parameters; a rerun skips folders whose marker
matches and redoes the others.

Backends: ``--ffmpeg auto`` (the default wherever a binary exists: ``--ffmpeg PATH``, else ``ffmpeg`` on
PATH, else the imageio-ffmpeg wheel's) runs PySlowFast's two ffmpeg commands themselves; ``--ffmpeg none``
decodes with PyAV and picks the frames ffmpeg 5.1 picks, written as ffmpeg's ``-q:v 1`` JPEGs. Each video is
written atomically (a temporary folder, then a rename); the backend and the ffmpeg build go into its marker.

Modules: ``framechoice`` (which source frame fills each output frame: ffmpeg 5.1's rule), ``jpeg``
(ffmpeg's ``-q:v 1`` JPEGs with PyAV), ``ffmpeg`` (the real-ffmpeg backend), ``extract`` (decoding, done
markers, the whole :func:`prepare` run), ``framelists`` (PySlowFast frame lists) and ``cli``.
"""

from ava_tools.prepare.cli import cli, get_args_parser, main
from ava_tools.prepare.extract import (
    AVA_END_SEC,
    AVA_START_SEC,
    PrepareSummary,
    extract_frames,
    prepare,
    video_id_from_path,
)
from ava_tools.prepare.ffmpeg import FfmpegBinary, find_ffmpeg
from ava_tools.prepare.framechoice import FfmpegFrameSelector, select_source_frames
from ava_tools.prepare.framelists import DONE_MARKER, write_frame_list

__all__ = [
    "AVA_END_SEC",
    "AVA_START_SEC",
    "DONE_MARKER",
    "FfmpegBinary",
    "FfmpegFrameSelector",
    "PrepareSummary",
    "cli",
    "extract_frames",
    "find_ffmpeg",
    "get_args_parser",
    "main",
    "prepare",
    "select_source_frames",
    "video_id_from_path",
    "write_frame_list",
]
