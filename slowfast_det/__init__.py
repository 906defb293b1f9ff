"""slowfast_det: spatiotemporal action detection with SlowFast + a Detectron2 person detector.

Data flow, one package per step: video (``video``: probe, frame sources, clip stream) -> frames -> person boxes
(``detection``) -> clips (``data`` for AVA training and testing, ``video.stream`` for any video) -> SlowFast
features and RoI head (``models``) -> scores -> tables and CSVs (``pipeline``) / AVA mAP
(``ava_tools.evaluate``). ``config`` reads configs, ``builders`` maps them to modules, ``checkpoint`` loads
weights, ``engine`` trains and tests, ``tools`` holds the command lines. Importing this package is cheap: no
torch or detectron2 import happens here.
"""

__version__ = "0.1.0"
