"""Whole videos to per-person action tables (data flow: scores -> CSV).

Modules: ``detector`` (:class:`~slowfast_det.pipeline.detector.VideoActionDetector` joins the clip stream,
the person detector, the tracker and the action model; :func:`~slowfast_det.pipeline.detector.run_videos`
processes many videos with skip, outputs and a summary), ``tracking`` (IoU tracker giving stable person ids) and
``tables`` (AVA detection CSVs and per-person action tables). Importing this package imports no submodule.
"""
