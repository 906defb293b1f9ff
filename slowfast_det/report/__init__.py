"""Self-contained HTML result pages: one file with inline CSS and JS, openable offline from disk.

* :mod:`slowfast_det.report.video`: the per-video page of ``detect-video --report`` (``OUT/<name>.report.html``):
  a timeline with one row per person id, coloured bars per action, a video player that clicking a bar seeks,
  per-person thumbnails and totals, and filters by action, person and score threshold.
* :mod:`slowfast_det.report.dataset`: the page of ``slowfast-test --report`` (``OUTPUT_DIR/report.html``):
  per-class AP bars and, per keyframe, ground-truth against predicted boxes on a thumbnail strip.
* :mod:`slowfast_det.report.page`: what both share: the templates (package data under ``templates/``), the
  injection of the generated JSON data block, downscaled JPEG thumbnails as ``data:`` URIs.

The pages hold their data once, in a ``<script type="application/json">`` block generated from the result
tables; the template's JS builds everything from it, so filters recompute in the browser.
"""

from __future__ import annotations

from slowfast_det.report.dataset import dataset_report_data, write_dataset_report
from slowfast_det.report.page import render_page
from slowfast_det.report.video import video_report_data, write_detect_video_reports, write_video_report

__all__ = [
    "dataset_report_data",
    "render_page",
    "video_report_data",
    "write_dataset_report",
    "write_detect_video_reports",
    "write_video_report",
]
