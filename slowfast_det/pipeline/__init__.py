"""Whole videos to per-person action tables (data flow: scores -> CSV).

Modules: ``detector`` (:class:`~slowfast_det.pipeline.detector.VideoActionDetector` joins the clip stream,
the person detector, the tracker and the action model; :func:`~slowfast_det.pipeline.detector.run_videos`
processes many videos with skip, outputs and a summary), ``tracking`` (IoU tracker giving stable person ids),
``tables`` (AVA detection CSVs and per-person action tables), ``live`` (:func:`~slowfast_det.pipeline.live.run_live`:
a live stream with bounded latency) and ``shard`` (:func:`~slowfast_det.pipeline.shard.run_sharded`: many videos
over torchrun ranks). Importing this package imports no submodule.
"""
