"""slowfast_det: spatiotemporal action detection with SlowFast + a Detectron2 person detector.

Data flow, one module per step: video (``video``) -> frames -> person boxes (``detector``) -> clips
(``data``) -> SlowFast features and RoI head (``models``) -> scores -> CSV (``export``) / AVA mAP
(``ava_tools.evaluate``). Importing this package is cheap: no torch or detectron2 import happens here.
"""

__version__ = "0.1.0"
