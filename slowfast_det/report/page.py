"""Templates, data injection and thumbnails shared by the report pages.

A template (``templates/<name>.html``, package data) holds the page's CSS and JS and two markers:
``@@TITLE@@`` (replaced by the HTML-escaped title) and ``@@REPORT_DATA@@`` inside
``<script type="application/json" id="report-data">`` (replaced by the data as JSON). The JSON is made safe
for a script element by writing every ``<``, ``>`` and ``&`` as a ``\\uXXXX`` escape, so no string in the
data (a video name holding ``</script>``, say) can end the element early; ``JSON.parse`` reads the escapes
back as the same characters.
"""

from __future__ import annotations

import base64
import html
import json
import math
from importlib import resources
from typing import Any

import cv2
import numpy as np

__all__ = ["DATA_MARKER", "TITLE_MARKER", "jpeg_data_uri", "json_for_script", "render_page", "template_text"]

DATA_MARKER = "@@REPORT_DATA@@"
TITLE_MARKER = "@@TITLE@@"


def template_text(name: str) -> str:
    """The text of ``slowfast_det/report/templates/<name>`` (package data)."""
    return (resources.files("slowfast_det.report") / "templates" / name).read_text(encoding="utf-8")


def _finite(x: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN), recursively."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def json_for_script(data: Any) -> str:
    """Compact JSON of ``data`` (NaN as null) that can sit inside a ``<script>`` element unchanged."""
    text = json.dumps(_finite(data), separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(template: str, data: Any, *, title: str) -> str:
    """The page: template ``template`` with ``title`` and ``data`` (JSON-able) injected.

    Raises:
        ValueError: the template lacks a marker or holds one twice (a broken package).
    """
    text = template_text(template)
    if text.count(DATA_MARKER) != 1 or TITLE_MARKER not in text:
        raise ValueError(f"report template {template}: expected {DATA_MARKER} once and {TITLE_MARKER}")
    return text.replace(TITLE_MARKER, html.escape(title)).replace(DATA_MARKER, json_for_script(data))


def jpeg_data_uri(bgr: np.ndarray, *, max_width: int, max_height: int, quality: int = 75) -> str:
    """A ``data:image/jpeg;base64,...`` URI of ``bgr`` (H, W, 3 uint8) shrunk to fit max_width x max_height px.

    Never upscales; ``cv2.INTER_AREA`` for the shrink (no aliasing in small thumbnails).
    """
    h, w = bgr.shape[:2]
    scale = min(1.0, max_width / max(w, 1), max_height / max(h, 1))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"could not encode a {bgr.shape} image as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")
