"""Config loading: PySlowFast YAML unchanged, our configs, ignored keys, misspellings, overrides."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from slowfast_det.config import (
    IGNORED_KEYS,
    ConfigError,
    dump_config,
    get_default_config,
    load_config,
    load_config_from_string,
)

REPO = Path(__file__).resolve().parents[1]


def test_every_pyslowfast_config_loads_and_round_trips(pyslowfast_configs: Path) -> None:
    files = sorted(pyslowfast_configs.rglob("*.yaml"))
    assert len(files) >= 20
    for path in files:
        cfg = load_config(path)
        assert load_config_from_string(dump_config(cfg)) == cfg, path


def test_every_project_config_loads() -> None:
    files = sorted((REPO / "configs").rglob("*.yaml"))
    assert files, "configs/ holds no YAML file"
    for path in files:
        load_config(path)


def test_pyslowfast_values_reach_the_config(pyslowfast_configs: Path) -> None:
    cfg = load_config(pyslowfast_configs / "configs/AVA/c2/SLOWFAST_32x2_R101_50_50.yaml")
    assert cfg.RESNET.DEPTH == 101
    assert cfg.SLOWFAST.FUSION_KERNEL_SZ == 5
    assert cfg.NONLOCAL.LOCATION[2][0] == [6, 13, 20]
    assert cfg.DETECTION.ENABLE is True and cfg.DETECTION.ALIGNED is False
    # YAML reads `1e-7` as a string; PySlowFast (yacs) evaluates it as a literal.
    assert cfg.SOLVER.WEIGHT_DECAY == pytest.approx(1e-7) and isinstance(cfg.SOLVER.WEIGHT_DECAY, float)
    # keys absent from the file keep PySlowFast's defaults
    assert cfg.DETECTION.ROI_XFORM_RESOLUTION == 7 and cfg.DATA.MEAN == [0.45, 0.45, 0.45]
    assert cfg.is_frozen()


def test_ignored_keys_are_listed_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("DEMO:\n  WEBCAM: 0\n  DETECTRON2_THRESH: 0.7\nMVIT:\n  DEPTH: 24\n  EMBED_DIM: 96\n")
    with caplog.at_level(logging.WARNING, logger="slowfast_det.config"):
        cfg = load_config(path)
    assert cfg.DEMO.DETECTRON2_THRESH == pytest.approx(0.7)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    for key in ("DEMO.WEBCAM", "MVIT.DEPTH", "MVIT.EMBED_DIM"):
        assert key in warnings[0]
    assert "DETECTRON2_THRESH" not in warnings[0]


def test_misspelt_key_names_key_file_and_closest(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("SOLVER:\n  BASE_LR: 0.1\n  WARMUP_EPOCH: 2.0\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "SOLVER.WARMUP_EPOCH" in message and str(path) in message and "SOLVER.WARMUP_EPOCHS" in message


def test_misspelt_section_and_wrong_type(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("RESNETT:\n  DEPTH: 50\n")
    with pytest.raises(ConfigError, match="RESNETT.DEPTH.*RESNET.DEPTH"):
        load_config(path)
    path.write_text("RESNET:\n  DEPTH: fifty\n")
    with pytest.raises(ConfigError, match="RESNET.DEPTH expects a int"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_command_line_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("SOLVER:\n  BASE_LR: 0.1\n")
    cfg = load_config(path, ["SOLVER.BASE_LR", "0.025", "DATA.MEAN", "[0.1, 0.2, 0.3]", "OUTPUT_DIR", "/tmp/x"])
    assert cfg.SOLVER.BASE_LR == pytest.approx(0.025)
    assert cfg.DATA.MEAN == [0.1, 0.2, 0.3]
    assert cfg.OUTPUT_DIR == "/tmp/x"
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        load_config(path, ["SOLVER.BASE_LR"])
    with pytest.raises(ConfigError, match="SOLVER.BASE_LRR.*SOLVER.BASE_LR"):
        load_config(path, ["SOLVER.BASE_LRR", "0.1"])


def test_base_inheritance(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("SOLVER:\n  BASE_LR: 0.1\n  MAX_EPOCH: 5\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base.yaml\nSOLVER:\n  BASE_LR: 0.2\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.SOLVER.BASE_LR == pytest.approx(0.2) and cfg.SOLVER.MAX_EPOCH == 5


def test_ignored_and_used_keys_are_disjoint() -> None:
    def leaves(node, prefix=""):  # type: ignore[no-untyped-def]
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    used = set(leaves(get_default_config()))
    assert not used & IGNORED_KEYS
