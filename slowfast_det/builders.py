"""The one place that maps a config (``slowfast_det.config``) to the keyword arguments of library modules.

Library classes and functions take plain keyword arguments and never read a config. Each ``*_kwargs(cfg)``
function below returns exactly the keyword arguments of one constructor, so a reader sees in one file which
config key drives which argument.
"""

from __future__ import annotations

from typing import Any

from yacs.config import CfgNode

# ---------------------------------------------------------------------------------------------------------
# models (slowfast_det.models)
# ---------------------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------------------
# data (slowfast_det.data)
# ---------------------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------------------
# engine: optimiser, schedule, training and testing loops (slowfast_det.engine)
# ---------------------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------------------
# video detection (slowfast_det.pipeline / detector / tracking)
# ---------------------------------------------------------------------------------------------------------

__all__: list[str] = []
_unused: tuple[Any, ...] = (CfgNode,)
