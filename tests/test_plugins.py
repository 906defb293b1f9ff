"""The places to plug in new parts: frame sources, model and dataset registries, shipped configs by name."""

from __future__ import annotations

from collections.abc import Generator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from test_streaming import cfr_times, read_index, write_index_video

from slowfast_det import builders, configs
from slowfast_det.config import ConfigError, load_config, load_config_from_string
from slowfast_det.video.sources import FileSource, FrameSource, SourceFrame
from slowfast_det.video.stream import ClipStream


class _ArrayFrame(SourceFrame):
    __slots__ = ("_bgr",)

    def __init__(self, time: Fraction, bgr: np.ndarray) -> None:
        super().__init__(time)
        self._bgr = bgr

    def to_ndarray(self, format: str = "bgr24") -> np.ndarray:
        return self._bgr if format == "bgr24" else self._bgr[:, :, ::-1]


class _MemorySource(FrameSource):
    """A non-seekable source of frames held in memory (what a live stream looks like to ClipStream)."""

    def __init__(self, frames: list[tuple[Fraction, np.ndarray]]) -> None:
        self.name = "<memory>"
        self._frames = frames
        self.pulled = 0

    def frames(self, seek: Fraction | None = None, *, threads: int = 0) -> Generator[SourceFrame, None, None]:
        assert seek is None, "ClipStream must not seek a source that is not seekable"
        for t, bgr in self._frames:
            self.pulled += 1
            yield _ArrayFrame(t, bgr)


def test_clip_stream_over_a_custom_source_equals_the_file(tmp_path: Path) -> None:
    times = cfr_times(150, Fraction(25))  # 6 s at 25 fps
    video = write_index_video(tmp_path / "v.mp4", times, width=64, height=48)
    decoded = [(f.time, f.bgr()) for f in FileSource(video).frames()]
    kwargs = dict(num_frames=4, sampling_rate=4, stride=1, start=1, end=5)
    from_file = list(ClipStream(video, **kwargs))
    source = _MemorySource(decoded)
    from_memory = list(ClipStream(source, **kwargs))
    assert [c.time for c in from_memory] == [c.time for c in from_file] == [1, 2, 3, 4, 5]
    for a, b in zip(from_memory, from_file, strict=True):
        assert a.frame_times == b.frame_times
        assert [read_index(f) for f in a.frames] == [read_index(f) for f in b.frames]
        assert np.array_equal(a.keyframe, b.keyframe)
    # the stream stops pulling once the last keyframe's clip is complete
    assert source.pulled < len(decoded)


def test_late_start_on_a_source_that_cannot_seek_reads_from_the_start(tmp_path: Path) -> None:
    times = cfr_times(30 * 8, Fraction(30))
    video = write_index_video(tmp_path / "long.mp4", times, width=32, height=32)
    decoded = [(f.time, f.bgr()) for f in FileSource(video).frames()]
    clips = list(ClipStream(_MemorySource(decoded), num_frames=2, sampling_rate=1, stride=1, start=7))
    assert [c.time for c in clips] == [7]
    assert [read_index(f) for f in clips[0].frames] == [209, 210]


def test_model_registry_builds_by_arch_and_names_the_choices() -> None:
    cfg = load_config("synth/SLOW_4x16_R50_TINY")
    assert builders.MODEL_BUILDERS["slow"] is builders.MODEL_BUILDERS["slowfast"]
    model = builders.build_model(cfg)
    assert type(model).__name__ == "SlowFast" and model.num_pathways == 1
    bad = load_config_from_string("MODEL: {ARCH: x3d, MODEL_NAME: X3D}")
    with pytest.raises(ConfigError, match=r"MODEL.ARCH 'x3d' has no builder \(registered: slow, slowfast\)"):
        builders.build_model(bad)


def test_registering_a_new_model_and_dataset() -> None:
    calls: list[tuple[str, str]] = []

    @builders.register_model("toy_arch")
    def _toy_model(cfg):  # noqa: ANN001, ANN202
        calls.append(("model", cfg.MODEL.ARCH))
        return "toy model"

    @builders.register_dataset("toy_data")
    def _toy_dataset(cfg, split):  # noqa: ANN001, ANN202
        calls.append(("dataset", split))
        return f"toy {split}"

    try:
        cfg = load_config_from_string("MODEL: {ARCH: toy_arch}\nTRAIN: {DATASET: toy_data}\nTEST: {DATASET: toy_data}")
        assert builders.build_model(cfg) == "toy model"
        assert builders.build_dataset(cfg, "train") == "toy train"
        assert builders.build_dataset(cfg, "val") == "toy val"
        assert calls == [("model", "toy_arch"), ("dataset", "train"), ("dataset", "val")]
        with pytest.raises(ValueError, match="registered twice"):
            builders.register_model("toy_arch")(_toy_model)
    finally:
        builders.MODEL_BUILDERS.pop("toy_arch")
        builders.DATASET_BUILDERS.pop("toy_data")
    cfg = load_config_from_string("TEST: {DATASET: kinetics}")
    with pytest.raises(ConfigError, match=r"TEST.DATASET 'kinetics' has no builder \(registered: ava\)"):
        builders.build_dataset(cfg, "test")


def test_shipped_configs_by_name() -> None:
    names = configs.list_configs()
    assert "AVA/SLOWFAST_32x2_R101_50_50" in names and "synth/SLOWFAST_16x4_R50_TINY" in names
    for name in names:
        assert configs.path(name).is_file()
        assert configs.path(name + ".yaml") == configs.path(name)
    # the configs live inside the package (so a wheel ships them), not only in a checkout
    assert configs.CONFIG_ROOT == Path(configs.__file__).parent
    cfg = load_config("AVA/SLOWFAST_32x2_R101_50_50")
    assert cfg.RESNET.DEPTH == 101 and cfg.MODEL.ARCH == "slowfast"
    with pytest.raises(Exception, match="closest: AVA/SLOWFAST_32x2_R101_50_50"):
        configs.path("AVA/SLOWFAST_32x2_R101_5O_50")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("AVA/NO_SUCH_MODEL")


def test_every_default_key_is_read_or_ignored() -> None:
    """No default key that nothing reads: each is used by the code, or listed (and warned about) as ignored."""
    import re
    import subprocess

    from slowfast_det.config import IGNORED_KEYS, _flat_keys, get_default_config

    repo = Path(__file__).resolve().parents[1]
    files = subprocess.run(["git", "ls-files", "slowfast_det", "ava_tools"], cwd=repo, capture_output=True,
                           text=True, check=True).stdout.split()
    source = "\n".join((repo / f).read_text() for f in files if f.endswith(".py") and f != "slowfast_det/config.py")
    unread = [k for k in _flat_keys(get_default_config()) if not re.search(re.escape(k), source)]
    assert unread == [], f"default keys nothing reads (read them, or move them to IGNORED_KEYS): {unread}"
    assert not IGNORED_KEYS & set(_flat_keys(get_default_config()))
