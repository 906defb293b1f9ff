"""Person boxes: the Detectron2 Faster R-CNN person detector (data flow: frames -> person boxes).

Modules: ``person`` (:class:`~slowfast_det.detection.person.PersonDetector` on keyframes), ``training``
(fine-tuning a detector with detectron2's trainer, COCO AP with pycocotools, AVA box CSV export), ``compat``
(detectron2 v0.6 shims for a Python-only install) and ``install`` (that Python-only installer).
Importing this package imports no submodule (detectron2 loads only when a detector is built).
"""
