"""AVA frame-level action detection evaluation with exactly the official ActivityNet numbers, fast.

A drop-in replacement for ActivityNet's ``Evaluation/get_ava_performance.py``::

    python -m ava_tools.evaluate -l LABELMAP.pbtxt -g GROUNDTRUTH.csv -d DETECTIONS.csv \
        [-e EXCLUSIONS.csv] [--json OUT.json] [--plot OUT.png] [--sort {id,name,ap}] [--iou 0.3 0.75]

The metrics dict (``EvalResult.metrics``, ``--json``) holds exactly the official keys and values:
``PascalBoxes_Precision/mAP@0.5IOU`` and one ``PascalBoxes_PerformanceByCategory/AP@0.5IOU/<name>`` per
label-map name. Reproduced behaviours of the official code
(https://github.com/activitynet/ActivityNet/tree/master/Evaluation):

* Keyframe keys: ``"%s,%.6f" % (video_id, Decimal(timestamp))`` (so ``902``, ``0902`` and ``906.0000001``
  are one keyframe). Only keys present anywhere in the ground-truth file are scored (2-column rows and
  out-of-map rows included); detections elsewhere are ignored; 2-column detection rows are ignored.
* With ``-e`` (or ``legacy=True``) the whole earlier official release applies instead (the one that still
  took ``-e``, whose per-image evaluation has no NMS step): keys ``"%s,%04d" % (video_id, int(timestamp))``,
  excluded keys dropped from both files, every other detection keyframe scored (those absent from the
  ground truth are all false positives), 2-column rows rejected.
* Rows whose class is not in the label map are dropped first (silently, as the official does).
* At most 50 detections per keyframe, chosen by the official min-heap of ``(score, action_id, y1, x1, y2,
  x2)`` filled in file order (a row enters a full heap only if its score is strictly above the smallest
  score, evicting the smallest *tuple*), then stably sorted by descending score over the heap's array order.
  Ground truth goes through the same heap without cap, person_id acting as the score.
* Detection boxes with ``x1 >= x2`` or ``y1 >= y2`` use a cap slot and are then dropped.
* VOC greedy matching per keyframe and class in float64 with the official IoU formula: each detection takes
  the first arg-max-IoU ground-truth box of its class; true positive iff IoU >= 0.5 and that box is not yet
  matched (no fall-back to the next best box).
* All-points VOC AP per class; classes without ground truth are NaN and left out of the mean
  (``np.nanmean``); classes with ground truth but no detections score 0.

How it is fast: CSVs are parsed in 32 MB pieces by pyarrow (explicit column types), rows that cannot enter
any keyframe's top 50 are discarded on the fly, the cap is resolved with vectorised order statistics (the
exact outcome of the heap, ties included, follows from the first 50 rows scoring at or above the 50th-best
score), and matching is vectorised over all keyframes and classes. The heap's array order is only needed to
order detections of one keyframe and class with *equal* scores and different boxes whose true/false-positive
labels differ; those few keyframes are re-read and replayed through a literal heap (``heapq``). Files that
the fast reader cannot judge exactly (mixed 7/8-column rows, fields pyarrow rejects but Python's float()/int()
accept, errors whose line is unknown) are read again line by line with the ``csv`` module, like the official.

Order-dependent official behaviour: per class, the official concatenates the detections of all keyframes
(keyframes in order of first appearance in the detection file) and sorts with ``np.argsort(scores)[::-1]``,
an unstable sort, so with tied scores the AP can depend on the numpy version. We build the same array in the
same order and call the same numpy function, so we match the official run on the installed numpy.

Bad input raises :class:`AvaFormatError` naming the file, line and problem (the CLI prints it and exits 2):
wrong column count, non-numeric field, bad timestamp, NaN score, and (unless ``check_range=False`` /
``--no-range-check``) coordinates outside [0, 1] and inverted ground-truth boxes. Where the official defines a
behaviour it is kept: unknown class ids are dropped, inverted detection boxes take a cap slot then vanish,
an empty detection file gives AP 0 for every class with ground truth (the CLI warns that it has no rows).
The CLI checks that its --json / --plot outputs can be written before evaluating.

Modules: ``keys`` (keyframe keys), ``rows`` (shared numbers, row containers), ``readers`` (CSV parsing,
filtering, validation), ``cap`` (ground-truth order, the 50-per-keyframe cap), ``metrics`` (matching, AP),
``core`` (:func:`evaluate`), ``report`` (table, JSON, plot) and ``cli``.
"""

from ava_tools.evaluate.cli import cli, get_args_parser, main
from ava_tools.evaluate.core import EvalResult, evaluate
from ava_tools.evaluate.readers import read_detections_csv, read_exclusions_csv, read_groundtruth_csv
from ava_tools.evaluate.report import format_report, plot_per_class, write_metrics_json
from ava_tools.evaluate.rows import DETECTION_CAPACITY, MAP_KEY, OFFICIAL_IOU, metric_key
from ava_tools.labelmap import AvaFormatError

__all__ = [
    "AvaFormatError",
    "DETECTION_CAPACITY",
    "EvalResult",
    "MAP_KEY",
    "OFFICIAL_IOU",
    "cli",
    "evaluate",
    "format_report",
    "get_args_parser",
    "main",
    "metric_key",
    "plot_per_class",
    "read_detections_csv",
    "read_exclusions_csv",
    "read_groundtruth_csv",
    "write_metrics_json",
]
