"""Output: the per-class table, the official metrics JSON and the per-class AP bar chart."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported lazily: the CLI path does not need it (saves ~1 s of start-up)
    pass

from ava_tools.atomic import atomic_output, write_text_atomic
from ava_tools.evaluate.core import EvalResult
from ava_tools.evaluate.rows import MAP_KEY


def _table_order(result: EvalResult, sort: str) -> list[int]:
    """Row order of ``class_table`` for ``--sort`` (id, name, or AP descending with NaN last)."""
    t = result.class_table
    rows = range(len(t["id"]))
    if sort == "name":
        return sorted(rows, key=lambda i: t["name"][i])
    if sort == "ap":
        return sorted(rows, key=lambda i: (np.isnan(t["ap"][i]), -np.nan_to_num(t["ap"][i])))
    return sorted(rows, key=lambda i: t["id"][i])


def format_report(result: EvalResult, sort: str = "id") -> str:
    """Readable per-class table (name, AP, #GT, #detections), the official mAP, then the NOT-official extras."""
    t = result.class_table
    order = _table_order(result, sort)
    width = max([len("class"), *(len(n) for n in t["name"])])
    lines = [f"{'id':>3}  {'class':<{width}}  {'AP':>7}  {'#GT':>7}  {'#det':>9}"]
    for i in order:
        ap = "    nan" if np.isnan(t["ap"][i]) else f"{t['ap'][i]:7.4f}"
        lines.append(f"{t['id'][i]:>3}  {t['name'][i]:<{width}}  {ap}  {t['n_gt'][i]:>7}  {t['n_det'][i]:>9}")
    lines.append(f"{MAP_KEY}: {result.mean_ap:.6f}")
    extras = [f"  {group}: {value:.4f}" for group, value in result.group_ap.items()]
    extras += [f"  frame-mAP@{t_}IOU: {m['mAP']:.6f}" for t_, m in result.iou_metrics.items()]
    if extras:
        lines.append("Not official (category means of the class APs above; other IoU thresholds):")
        lines.extend(extras)
    return "\n".join(lines)


def write_metrics_json(metrics: dict[str, float], path: str) -> None:
    """Write the flat official dict as JSON (NaN written as ``NaN``), atomically."""
    text = json.dumps({k: float(v) for k, v in metrics.items()}, indent=2, allow_nan=True)
    write_text_atomic(text + "\n", path)


def plot_per_class(result: EvalResult, path: str, sort: str = "id") -> None:
    """Bar chart of per-class AP (PNG, matplotlib Agg backend), atomically written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = _table_order(result, sort)
    names = [result.class_table["name"][i] for i in order]
    aps = np.nan_to_num(np.asarray([result.class_table["ap"][i] for i in order], float), nan=0.0)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.22 * len(order)), 5.0))
    ax.bar(np.arange(len(order)), aps, color="tab:blue")
    ax.set_xticks(np.arange(len(order)))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_ylabel("AP@0.5IOU")
    ax.set_ylim(0, 1)
    ax.set_title(f"AVA per-class AP (mAP {result.mean_ap:.4f})")
    fig.tight_layout()

    try:
        with atomic_output(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)
