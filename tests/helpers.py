"""Helpers shared by several test modules (``from helpers import ...``: pytest puts tests/ on ``sys.path``)."""

from __future__ import annotations


def slowfast_r50_stages_yaml(width_per_group: int) -> str:
    """The ``RESNET`` and ``NONLOCAL`` sections of PySlowFast's SlowFast R50 (no non-local blocks) as YAML.

    The stage layout of ``SLOWFAST_32x2_R50_SHORT.yaml``; ``width_per_group`` shrinks the model for tests.
    The text has no braces, so it can be joined to ``str.format`` templates unescaped.
    """
    return f"""\
RESNET:
  WIDTH_PER_GROUP: {width_per_group}
  DEPTH: 50
  NUM_BLOCK_TEMP_KERNEL: [[3, 3], [4, 4], [6, 6], [3, 3]]
  SPATIAL_DILATIONS: [[1, 1], [1, 1], [1, 1], [2, 2]]
  SPATIAL_STRIDES: [[1, 1], [2, 2], [2, 2], [1, 1]]
NONLOCAL:
  LOCATION: [[[], []], [[], []], [[], []], [[], []]]
  GROUP: [[1, 1], [1, 1], [1, 1], [1, 1]]
  POOL: [[[1, 2, 2], [1, 2, 2]], [[1, 2, 2], [1, 2, 2]], [[1, 2, 2], [1, 2, 2]], [[1, 2, 2], [1, 2, 2]]]
"""
