"""SynthAVA: a small, seeded, synthetic action-detection dataset in the exact AVA / PySlowFast layout.

Each video shows several articulated "people" (torso, head, two two-segment arms, two two-segment legs,
textured clothes) in front of a cluttered background with drifting shapes and foreground pillars.
People enter and leave the frame, occlude each other and perform actions from :data:`SYNTH_CLASSES`,
several at once (e.g. "move right" + "walk" + "wave fast" + "hold object").

Label distribution (generator version 2, a dataset redesign): sparse and AVA-like. Each segment draws its
locomotion (idle 72%, walk 14%, run 14%; an entering person's first segment walks or runs), its arms (neutral
58%, raised 14%, waving slow 14%, waving fast 14%), holding an object (13%) and, when idle, crouching (22%)
(:data:`LOCO_P`, :data:`ARMS_P`, :data:`HOLD_P`, :data:`CROUCH_P`). On the boxes of a default demo dataset
(16 videos x 30 s) each class is on 12-18% of the person boxes (mean 15%), about 30% of the people do nothing,
and most of the others carry 1 or 2 actions (a moving person carries both a speed and a direction). Version 1
drew every class far more often (each on 18-32% of the boxes, mean 26%), so uniform random scores already
reached frame-mAP 0.3 on ground-truth boxes and a model could not be told from chance by a ratio.

Classes are of two kinds (:attr:`SynthClass.kind`), reported separately by benchmarks:

* ``appearance``: visible in a single frame (raise arms, crouch, hold object);
* ``motion``: needs several frames. People face the camera and their figure is mirror-symmetric,
  so direction (move left/right) and speed (walk/run: same leg animation, different translation speed)
  are only seen over time. "wave slow" and "wave fast" oscillate one forearm at ``f`` and
  ``f + 30/16`` Hz: frames 16 apart are in the same phase, so with a random per-person phase a sampler
  with a 16-frame stride cannot tell them apart, while a 2-frame stride can.

Timeline: a video of S seconds stands for AVA seconds 900..900+S (t = 0 is second 900, as if cut
already); frame n (0-based) is at t = n/30. Keyframes are every second from 902 to 900+S-2; keyframe
second s is frame ``(s - 900) * 30``, i.e. file ``{vid}_{(s-900)*30+1:06d}.jpg``.

Boxes: a person's box is the tight box of its pixels that are visible in the rendered keyframe
(after occlusion by other people and pillars, clipped to the frame; the held object is part of the
person). People with less than ``MIN_VISIBLE`` (30%) of their silhouette visible are not annotated
(neither action rows nor COCO boxes). A keyframe where a person inside the frame is (almost) fully
hidden by other people or pillars (< 10% visible) is listed in the excluded-timestamps files (its other
annotations are kept); people cut off by the frame edge do not exclude a keyframe.
People with no action at a keyframe (idle, arms down, empty hands) get a COCO box but no action row.

Layout written under OUT (PySlowFast names)::

    videos/{vid}.mp4                     30 fps H.264, the "cut" video (t = 0 is second 900)
    frames/{vid}/{vid}_{%06d}.jpg        by ava_tools.prepare with start_sec=0, end_sec=S
    frame_lists/{train,val}.csv
    annotations/ava_{train,val}_v2.2.csv                   vid,%04d,x1,y1,x2,y2,action,person (no header)
    annotations/ava_action_list_synth.pbtxt                all classes
    annotations/ava_action_list_synth_for_eval.pbtxt       evaluated classes (all)
    annotations/ava_{train,val}_person_boxes.csv           vid,%04d,x1,y1,x2,y2,,1.0: every annotated person
                                                           (the same box text as the action CSV; no-action
                                                           people included: training negatives)
    annotations/ava_{train,val}_excluded_timestamps_v2.2.csv   vid,%04d
    annotations/coco_person_{train,val}.json               person boxes (pixels, xywh) on keyframe JPEGs
    annotations/synth_meta.json                            parameters, classes, split (written last)

Everything is a function of the parameters: the same seed gives the same bytes (CSVs, JSON and JPEGs) and the
same decoded video frames on a given software stack. The MP4s are lossless by default (``crf`` 0, 4:4:4): x264's
lossy bitstream was not reproducible (see :func:`generate`), and its MP4 container bytes may still differ.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ava_tools.atomic import write_csv_atomic, write_json_atomic, write_text_atomic
from ava_tools.cli import add_common_arguments, run_cli
from ava_tools.prepare import DONE_MARKER, prepare
from ava_tools.timeline import AVA_FPS, AVA_START_SEC, frame_file_name
from ava_tools.video_io import write_mp4

__all__ = [
    "ALIAS_STRIDE",
    "DEBUG_COLORS",
    "DEBUG_OBJECT_COLOR",
    "FPS",
    "MIN_VISIBLE",
    "PERSON_BOXES_NAME",
    "SYNTH_CLASSES",
    "Frame",
    "Person",
    "Scene",
    "Segment",
    "SynthClass",
    "SynthSummary",
    "generate",
    "get_args_parser",
    "keyframe_seconds",
    "main",
    "make_scene",
    "person_joints",
    "render_frame",
    "wave_cycles",
    "write_label_map",
]

logger = logging.getLogger(__name__)

FPS = AVA_FPS
TIME_ORIGIN_SEC = AVA_START_SEC  # t = 0 of a synthetic video is AVA second 900 (the cut start)
ALIAS_STRIDE = 16  # wave fast = wave slow + FPS / ALIAS_STRIDE Hz
MIN_VISIBLE = 0.3  # annotate a person if at least this fraction of its silhouette is visible
HIDDEN_VISIBLE = 0.1  # a person in the frame but less visible than this is "hidden": keyframe excluded
# Version 2: sparse, AVA-like labels (see the module docstring); version 1 had each class on 18-32% of boxes.
GENERATOR_VERSION = 2
# Probabilities of a segment's actions (version 2: sparse labels, each class on ~10-17% of the boxes, about a
# third of the boxes with no action). Locomotion idle / walk / run (an entering person's first segment always
# moves); arms neutral / raised / waving slow / waving fast; holding an object; crouching (idle people only).
LOCO_P = (0.72, 0.14, 0.14)
ARMS_P = (0.58, 0.14, 0.14, 0.14)
HOLD_P = 0.13
ENTER_WALK_P = 0.5  # an entering person walks (else runs) in its first segment
CROUCH_P = 0.22
META_NAME = "synth_meta.json"
LABEL_MAP_NAME = "ava_action_list_synth.pbtxt"
EVAL_LABEL_MAP_NAME = "ava_action_list_synth_for_eval.pbtxt"
#: every annotated person (with or without an action) per keyframe, in the predicted-box layout
PERSON_BOXES_NAME = "ava_{split}_person_boxes.csv"


@dataclass(frozen=True)
class SynthClass:
    """An action class: AVA id (1-based), name, ``kind`` ("appearance" or "motion"), what it looks like."""

    id: int
    name: str
    kind: Literal["appearance", "motion"]
    description: str


SYNTH_CLASSES: tuple[SynthClass, ...] = (
    SynthClass(1, "raise arms", "appearance", "both arms straight up"),
    SynthClass(2, "crouch", "appearance", "knees bent, body lowered (only while not moving)"),
    SynthClass(3, "hold object", "appearance", "a bright square or disc in one hand"),
    SynthClass(4, "walk", "motion", "horizontal speed 0.30-0.50% of the frame width per frame"),
    SynthClass(5, "run", "motion", "horizontal speed 0.80-1.10% of the frame width per frame"),
    SynthClass(6, "move left", "motion", "walking or running towards the left of the image"),
    SynthClass(7, "move right", "motion", "walking or running towards the right of the image"),
    SynthClass(8, "wave slow", "motion", "one forearm oscillating at f in [0.5, 1.0] Hz"),
    SynthClass(
        9, "wave fast", "motion", "one forearm oscillating at f + 30/16 Hz (aliases to f at stride 16)"
    ),
)
_CLS = {c.name: c.id for c in SYNTH_CLASSES}

# Part ids of a person sprite (0 = empty).
_LEGS, _TORSO, _SLEEVES, _FOREARMS, _HEAD, _HAIR, _OBJECT = 1, 2, 3, 4, 5, 6, 7
_N_PARTS = 8
# Flat colour of a held object in debug mode (generator version 2; version 1 used the person's colour).
DEBUG_OBJECT_COLOR = (255, 255, 255)
# Flat colour of person ``pid`` in debug mode: DEBUG_COLORS[pid % 8].
DEBUG_COLORS = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (255, 0, 255),
    (0, 255, 255),
    (255, 128, 0),
    (128, 0, 255),
)


# ----------------------------------------------------------------------------------------------------------
# Scene description
# ----------------------------------------------------------------------------------------------------------


_Loco = Literal["idle", "walk", "run"]
_Arms = Literal["neutral", "raise", "wave_slow", "wave_fast"]


@dataclass(frozen=True)
class Segment:
    """What a person does during frames ``[start, end)``.

    Attributes:
        loco: "idle", "walk" or "run".
        velocity: horizontal speed in pixels per frame (signed: + is rightwards; 0 when idle).
        crouch: crouching (only when idle).
        arms: "neutral", "raise", "wave_slow" or "wave_fast".
        wave_side: which arm waves: -1 the arm on the image's left, +1 the right one.
        hold: holds an object, in the hand of ``hold_side`` (the other arm than the waving one).
        step: legs step (walk, run, or stepping on the spot when idle).
    """

    start: int
    end: int
    loco: _Loco
    velocity: float
    crouch: bool
    arms: _Arms
    wave_side: int
    hold: bool
    hold_side: int
    step: bool

    def labels(self) -> list[int]:
        """Action ids (ascending) of this segment."""
        out = []
        if self.arms == "raise":
            out.append(_CLS["raise arms"])
        if self.crouch:
            out.append(_CLS["crouch"])
        if self.hold:
            out.append(_CLS["hold object"])
        if self.loco != "idle":
            out.append(_CLS[self.loco])
            out.append(_CLS["move left"] if self.velocity < 0 else _CLS["move right"])
        if self.arms == "wave_slow":
            out.append(_CLS["wave slow"])
        if self.arms == "wave_fast":
            out.append(_CLS["wave fast"])
        return sorted(out)


@dataclass(frozen=True)
class Person:
    """One person of a scene; sizes in pixels, frequencies in Hz, phases in cycles [0, 1).

    ``x[n]`` is the horizontal centre at frame n (NaN before ``spawn``); ``foot_y`` the ground line;
    ``height`` the standing height. ``palette`` is (8, 3) uint8: colour of each part id.
    """

    pid: int
    spawn: int
    height: float
    foot_y: float
    x: np.ndarray
    segments: tuple[Segment, ...]
    step_freq: float
    step_phase: float
    step_amp: float
    wave_freq: float
    wave_phase: float
    palette: np.ndarray
    stripe_color: tuple[int, int, int] | None
    stripe_period: int
    stripe_vertical: bool
    object_disc: bool

    def segment_at(self, n: int) -> Segment:
        """The segment covering frame ``n`` (the last one for frames past the end)."""
        for seg in self.segments:
            if seg.start <= n < seg.end:
                return seg
        return self.segments[-1] if n >= self.segments[-1].end else self.segments[0]


@dataclass(frozen=True)
class Scene:
    """Everything needed to render the frames of one video; people sorted back to front."""

    video_id: str
    width: int
    height: int
    n_frames: int
    background: np.ndarray  # (H, W, 3) uint8
    clutter: tuple[dict[str, Any], ...]
    occluder_mask: np.ndarray  # (H, W) bool
    occluder_rgb: np.ndarray  # (H, W, 3) uint8
    persons: tuple[Person, ...]
    light_phase: float
    debug_colors: bool


def wave_cycles(n: int, freq: float, phase: float, fast: bool) -> float:
    """Oscillation phase (cycles) of a waving forearm at frame ``n``.

    Slow: ``freq * n / FPS + phase``. Fast adds ``n / ALIAS_STRIDE`` cycles (frequency
    ``freq + FPS / ALIAS_STRIDE`` Hz), written as ``(n mod 16) / 16`` so that frames 16 apart give the
    bit-identical phase for fast and slow, not just equal up to rounding.
    """
    c = freq * n / FPS + phase
    if fast:
        c += (n % ALIAS_STRIDE) / ALIAS_STRIDE
    return c


def keyframe_seconds(seconds: int) -> list[int]:
    """AVA keyframe seconds of a synthetic video of ``seconds`` s: 902 .. 900 + seconds - 2."""
    return list(range(TIME_ORIGIN_SEC + 2, TIME_ORIGIN_SEC + seconds - 1))


def _vec(side: int, angle_deg: float, length: float) -> np.ndarray:
    """Limb vector: angle from straight down, positive = away from the body's centre line."""
    a = math.radians(angle_deg)
    return np.array([side * math.sin(a) * length, math.cos(a) * length])


def person_joints(person: Person, n: int) -> dict[str, np.ndarray]:
    """Joint positions (x, y) in image pixels of ``person`` at frame ``n`` (y grows downwards).

    Keys: head (centre), neck, hip, l_/r_shoulder, l_/r_elbow, l_/r_hand, l_/r_hip, l_/r_knee, l_/r_foot,
    object (centre, only while holding). "l" is the image's left (x smaller).
    """
    seg = person.segment_at(n)
    h = person.height
    x = float(person.x[min(n, len(person.x) - 1)])
    fy = person.foot_y
    lift_l = lift_r = bob = 0.0
    if seg.step and not seg.crouch:
        s = math.sin(2 * math.pi * (person.step_freq * n / FPS + person.step_phase))
        lift_l, lift_r = person.step_amp * h * max(0.0, s), person.step_amp * h * max(0.0, -s)
        bob = 0.012 * h * abs(s)
    j: dict[str, np.ndarray] = {}
    if seg.crouch:
        hip_y = fy - 0.30 * h
        for side, key in ((-1, "l"), (1, "r")):
            j[f"{key}_foot"] = np.array([x + side * 0.09 * h, fy])
            j[f"{key}_knee"] = np.array([x + side * 0.14 * h, fy - 0.17 * h])
            j[f"{key}_hip"] = np.array([x + side * 0.065 * h, hip_y])
    else:
        hip_y = fy - 0.47 * h - bob
        for side, key, lift in ((-1, "l", lift_l), (1, "r", lift_r)):
            j[f"{key}_foot"] = np.array([x + side * (0.07 * h + 0.3 * lift), fy - lift])
            j[f"{key}_knee"] = np.array(
                [x + side * (0.065 * h + 0.5 * lift), fy - 0.235 * h - 0.8 * lift - bob]
            )
            j[f"{key}_hip"] = np.array([x + side * 0.065 * h, hip_y])
    sh_y = hip_y - 0.31 * h
    j["hip"] = np.array([x, hip_y])
    j["neck"] = np.array([x, sh_y])
    j["head"] = np.array([x, sh_y - 0.105 * h])
    for side, key in ((-1, "l"), (1, "r")):
        upper, fore = 12.0, 8.0
        if seg.arms == "raise":
            upper, fore = 165.0, 172.0
        elif seg.arms in ("wave_slow", "wave_fast") and side == seg.wave_side:
            c = wave_cycles(n, person.wave_freq, person.wave_phase, seg.arms == "wave_fast")
            upper, fore = 95.0, 150.0 + 35.0 * math.sin(2 * math.pi * c)
        elif seg.hold and side == seg.hold_side:
            upper, fore = 15.0, 60.0
        elif seg.crouch:
            upper, fore = 25.0, 20.0
        shoulder = np.array([x + side * 0.11 * h, sh_y + 0.01 * h])
        elbow = shoulder + _vec(side, upper, 0.16 * h)
        hand = elbow + _vec(side, fore, 0.15 * h)
        j[f"{key}_shoulder"], j[f"{key}_elbow"], j[f"{key}_hand"] = shoulder, elbow, hand
        if seg.hold and side == seg.hold_side:
            j["object"] = hand + _vec(side, fore, 0.06 * h)
    return j


@dataclass
class _Sprite:
    x0: int
    y0: int
    parts: np.ndarray  # (h, w) uint8 part ids
    rgb: np.ndarray  # (h, w, 3) uint8


def _render_person(person: Person, n: int, frame_size: tuple[int, int] | None = None) -> _Sprite | None:
    """Draw ``person`` at frame ``n`` on a small canvas around it.

    Returns None if the person is not present, or lies entirely outside a ``frame_size`` (W, H) frame.
    """
    if n < person.spawn or not np.isfinite(person.x[min(n, len(person.x) - 1)]):
        return None
    j = person_joints(person, n)
    h = person.height
    limb_w = max(2, round(0.075 * h))
    arm_w = max(2, round(0.055 * h))
    head_r = 0.085 * h
    obj_r = 0.06 * h
    pts = np.stack(list(j.values()))
    pad = max(limb_w, head_r, obj_r) + 2
    x0, y0 = math.floor(pts[:, 0].min() - pad), math.floor(pts[:, 1].min() - pad)
    x1, y1 = math.ceil(pts[:, 0].max() + pad), math.ceil(pts[:, 1].max() + pad)
    if frame_size is not None and (x1 <= 0 or y1 <= 0 or x0 >= frame_size[0] or y0 >= frame_size[1]):
        return None  # entirely outside the frame
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(canvas)
    o = np.array([x0, y0], dtype=np.float64)

    def p(key: str) -> tuple[float, float]:
        v = j[key] - o
        return float(v[0]), float(v[1])

    for key in ("l", "r"):
        draw.line(
            [p(f"{key}_hip"), p(f"{key}_knee"), p(f"{key}_foot")], fill=_LEGS, width=limb_w, joint="curve"
        )
    draw.polygon([p("l_shoulder"), p("r_shoulder"), p("r_hip"), p("l_hip")], fill=_TORSO)
    draw.line([p("neck"), p("hip")], fill=_TORSO, width=max(2, round(0.16 * h)))
    hx, hy = p("head")
    draw.ellipse([hx - head_r, hy - head_r, hx + head_r, hy + head_r], fill=_HEAD)
    draw.chord([hx - head_r, hy - head_r, hx + head_r, hy + head_r], 180, 360, fill=_HAIR)
    for key in ("l", "r"):
        draw.line([p(f"{key}_shoulder"), p(f"{key}_elbow")], fill=_SLEEVES, width=arm_w, joint="curve")
        draw.line([p(f"{key}_elbow"), p(f"{key}_hand")], fill=_FOREARMS, width=arm_w, joint="curve")
    if "object" in j:
        cx, cy = p("object")
        box = [cx - obj_r, cy - obj_r, cx + obj_r, cy + obj_r]
        if person.object_disc:
            draw.ellipse(box, fill=_OBJECT)
        else:
            draw.rectangle(box, fill=_OBJECT)
    parts = np.asarray(canvas)
    rgb = person.palette[parts]
    if person.stripe_color is not None:
        if person.stripe_vertical:
            band = ((np.arange(parts.shape[1]) + x0) // person.stripe_period) % 2 == 1
            stripe = (parts == _TORSO) & band[None, :]
        else:
            band = (np.arange(parts.shape[0]) // person.stripe_period) % 2 == 1
            stripe = (parts == _TORSO) & band[:, None]
        rgb[stripe] = person.stripe_color
    return _Sprite(x0, y0, parts, rgb)


@dataclass
class Frame:
    """A rendered frame: ``rgb`` (H, W, 3) uint8; ``ids`` (H, W) uint8 with 0 = not a person and
    ``pid + 1`` where person ``pid`` is visible; ``full_area[pid]`` = pixel count of the person's whole
    silhouette (unoccluded, not clipped to the frame); ``inframe_area[pid]`` = the part of it inside the
    frame (before occlusion)."""

    rgb: np.ndarray
    ids: np.ndarray
    full_area: dict[int, int]
    inframe_area: dict[int, int]


def render_frame(scene: Scene, n: int) -> Frame:
    """Render frame ``n`` of ``scene`` (background, drifting clutter, people back to front, pillars)."""
    w, h = scene.width, scene.height
    img = Image.fromarray(scene.background)
    draw = ImageDraw.Draw(img)
    for c in scene.clutter:
        span_x, span_y = w + 2 * c["r"], h + 2 * c["r"]
        cx = (c["x"] + c["vx"] * n) % span_x - c["r"]
        cy = (c["y"] + c["vy"] * n) % span_y - c["r"]
        box = [cx - c["r"], cy - c["r"] * c["aspect"], cx + c["r"], cy + c["r"] * c["aspect"]]
        if c["disc"]:
            draw.ellipse(box, fill=c["color"])
        else:
            draw.rectangle(box, fill=c["color"])
    rgb = np.array(img)
    ids = np.zeros((h, w), np.uint8)
    full: dict[int, int] = {}
    inframe: dict[int, int] = {}
    for person in scene.persons:
        sprite = _render_person(person, n, (w, h))
        if sprite is None:
            continue
        mask = sprite.parts > 0
        full[person.pid] = int(mask.sum())
        # clip the sprite to the frame
        fx0, fy0 = max(sprite.x0, 0), max(sprite.y0, 0)
        fx1 = min(sprite.x0 + mask.shape[1], w)
        fy1 = min(sprite.y0 + mask.shape[0], h)
        if fx0 >= fx1 or fy0 >= fy1:
            continue
        sub = mask[fy0 - sprite.y0 : fy1 - sprite.y0, fx0 - sprite.x0 : fx1 - sprite.x0]
        inframe[person.pid] = int(sub.sum())
        region = rgb[fy0:fy1, fx0:fx1]
        region[sub] = sprite.rgb[fy0 - sprite.y0 : fy1 - sprite.y0, fx0 - sprite.x0 : fx1 - sprite.x0][sub]
        ids[fy0:fy1, fx0:fx1][sub] = person.pid + 1
    rgb[scene.occluder_mask] = scene.occluder_rgb[scene.occluder_mask]
    ids[scene.occluder_mask] = 0
    if not scene.debug_colors:  # slow global lighting drift
        gain = 1.0 + 0.06 * math.sin(2 * math.pi * (n / (FPS * 7.0) + scene.light_phase))
        rgb = np.clip(np.arange(256) * gain + 0.5, 0, 255).astype(np.uint8)[rgb]
    return Frame(rgb, ids, full, inframe)


# ----------------------------------------------------------------------------------------------------------
# Random scene construction
# ----------------------------------------------------------------------------------------------------------


def _hsv_color(
    rng: np.random.Generator, s: tuple[float, float], v: tuple[float, float]
) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s), rng.uniform(*v))
    return round(r * 255), round(g * 255), round(b * 255)


def _make_background(
    rng: np.random.Generator, w: int, h: int, debug: bool
) -> tuple[np.ndarray, tuple[dict[str, Any], ...], np.ndarray, np.ndarray]:
    """Static background, drifting clutter shapes, and foreground pillar mask + colours."""
    bg: np.ndarray
    if debug:
        bg = np.full((h, w, 3), 96, np.uint8)
    else:
        horizon = int(h * rng.uniform(0.35, 0.55))
        wall, floor = (
            np.array(_hsv_color(rng, (0.1, 0.5), (0.35, 0.8))),
            np.array(_hsv_color(rng, (0.1, 0.4), (0.25, 0.6))),
        )
        ramp = np.linspace(0.85, 1.1, h)[:, None, None]
        bg = np.where(np.arange(h)[:, None, None] < horizon, wall, floor) * ramp
        bg = bg + rng.normal(0, 6, (h, w, 1)) + rng.normal(0, 3, (h, w, 3))  # fixed grain
        img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(4, 9))):  # furniture, windows, posters
            x, y = rng.uniform(0, w), rng.uniform(0, horizon + 0.2 * h)
            bw, bh = rng.uniform(0.05, 0.25) * w, rng.uniform(0.05, 0.3) * h
            draw.rectangle([x, y, x + bw, y + bh], fill=_hsv_color(rng, (0.0, 0.7), (0.2, 0.9)))
        bg = np.asarray(img).astype(np.float64)
    bg = np.clip(bg, 0, 255).astype(np.uint8)

    clutter = []
    for _ in range(int(rng.integers(4, 9))):
        r = rng.uniform(0.02, 0.07) * w
        speed, angle = rng.uniform(0.05, 0.5), rng.uniform(0, 2 * math.pi)
        grey = int(rng.integers(40, 200))
        clutter.append(
            {
                "x": float(rng.uniform(0, w)),
                "y": float(rng.uniform(0, h)),
                "vx": float(speed * math.cos(angle)),
                "vy": float(speed * math.sin(angle) * 0.5),
                "r": float(r),
                "aspect": float(rng.uniform(0.4, 1.6)),
                "disc": bool(rng.random() < 0.5),
                "color": (grey, grey, grey) if debug else _hsv_color(rng, (0.0, 1.0), (0.2, 1.0)),
            }
        )

    occ_mask = np.zeros((h, w), bool)
    occ_rgb = np.zeros((h, w, 3), np.uint8)
    for _ in range(int(rng.choice([0, 1, 1, 2]))):  # pillars
        pw = int(rng.uniform(0.04, 0.11) * w)
        px = int(rng.uniform(0, w - pw))
        top = int(rng.uniform(0.0, 0.3) * h)
        occ_mask[top:, px : px + pw] = True
        if debug:
            occ_rgb[top:, px : px + pw] = 220
        else:
            col = np.array(_hsv_color(rng, (0.0, 0.4), (0.3, 0.9)), dtype=np.float64)
            shade = 0.75 + 0.35 * np.sin(np.linspace(0, math.pi, pw))[None, :, None]
            occ_rgb[top:, px : px + pw] = np.clip(col * shade, 0, 255).astype(np.uint8)
    return bg, tuple(clutter), occ_mask, occ_rgb


def _make_segments(
    rng: np.random.Generator, x0: float, spawn: int, n_frames: int, w: int, entering: bool
) -> tuple[tuple[Segment, ...], np.ndarray]:
    """Random action segments and the per-frame x track.

    Segment boundaries fall on half seconds (frame 15 mod 30), so a keyframe (whole second) is always
    at least half a second away from a change of action.
    """
    xs = np.full(n_frames, np.nan)
    segs: list[Segment] = []
    x = x0
    t = spawn
    first = True
    while t < n_frames:
        if first and not entering:
            dur = FPS // 2 + FPS * int(rng.integers(1, 5))  # end on a half second
        else:
            dur = FPS * int(rng.integers(2, 6))
        if first and entering:
            loco = "walk" if rng.random() < ENTER_WALK_P else "run"
        else:
            loco = str(rng.choice(["idle", "walk", "run"], p=LOCO_P))
        if loco == "run":  # runners cross the frame in 3-4 s: keep their segments short
            dur = min(dur, dur % FPS + FPS * int(rng.integers(2, 4)))
        end = min(t + dur, n_frames)
        towards_centre = 1 if x < w / 2 else -1
        if abs(x - w / 2) > 0.3 * w or (first and entering):
            direction = towards_centre if (first and entering) or rng.random() < 0.9 else -towards_centre
        else:
            direction = 1 if rng.random() < 0.5 else -1
        speed = 0.0
        if loco == "walk":
            speed = rng.uniform(0.0030, 0.0050) * w
        elif loco == "run":
            speed = rng.uniform(0.0080, 0.0110) * w
        crouch = loco == "idle" and rng.random() < CROUCH_P
        arms = str(rng.choice(["neutral", "raise", "wave_slow", "wave_fast"], p=ARMS_P))
        wave_side = 1 if rng.random() < 0.5 else -1
        hold = bool(rng.random() < HOLD_P)
        hold_side = -wave_side if arms.startswith("wave") else (1 if rng.random() < 0.5 else -1)
        step = loco != "idle" or (not crouch and rng.random() < 0.3)
        velocity = direction * speed
        segs.append(
            Segment(
                t,
                end,
                cast(_Loco, loco),
                velocity,
                crouch,
                cast(_Arms, arms),
                wave_side,
                hold,
                hold_side,
                step,
            )
        )
        xs[t:end] = x + velocity * np.arange(end - t)
        x = x + velocity * (end - t)
        t = end
        first = False
    return tuple(segs), xs


def make_scene(
    video_index: int,
    *,
    seed: int,
    seconds: int,
    width: int = 192,
    height: int = 144,
    debug_colors: bool = False,
    video_id: str | None = None,
) -> Scene:
    """Build the random (seeded by ``(seed, video_index)``) scene of one synthetic video."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, video_index]))
    n_frames = seconds * FPS
    w, h = width, height
    bg, clutter, occ_mask, occ_rgb = _make_background(rng, w, h, debug_colors)
    n_initial = int(rng.integers(3, 5))
    n_entering = int(rng.integers(2, 5))
    persons = []
    for pid in range(n_initial + n_entering):
        entering = pid >= n_initial
        depth = rng.random()
        ph = (0.40 + 0.38 * depth) * h
        foot_y = (0.66 + 0.32 * depth) * h + rng.uniform(-0.02, 0.02) * h
        half_w = 0.3 * ph
        if entering:
            spawn = FPS // 2 + FPS * int(rng.integers(0, max(1, seconds - 2)))
            x0 = -half_w if rng.random() < 0.5 else w + half_w
        else:
            spawn, x0 = 0, rng.uniform(0.1, 0.9) * w
        segments, xs = _make_segments(rng, x0, spawn, n_frames, w, entering)
        palette = np.zeros((_N_PARTS, 3), np.uint8)
        if debug_colors:
            palette[1:] = DEBUG_COLORS[pid % len(DEBUG_COLORS)]
            # the held object in white (debug clutter is grey): in the person's own colour it was a few pixels
            # of silhouette at the hand, and "hold object" stayed at chance after the demo's training
            palette[_OBJECT] = DEBUG_OBJECT_COLOR
            stripe = None
        else:
            skin = _hsv_color(rng, (0.25, 0.6), (0.35, 0.95))
            palette[_LEGS] = _hsv_color(rng, (0.2, 0.9), (0.15, 0.7))
            palette[_TORSO] = palette[_SLEEVES] = _hsv_color(rng, (0.3, 1.0), (0.3, 1.0))
            palette[_FOREARMS] = palette[_HEAD] = skin
            palette[_HAIR] = _hsv_color(rng, (0.2, 0.8), (0.05, 0.45))
            palette[_OBJECT] = _hsv_color(rng, (0.8, 1.0), (0.85, 1.0))
            stripe = _hsv_color(rng, (0.0, 1.0), (0.1, 1.0)) if rng.random() < 0.6 else None
        persons.append(
            Person(
                pid=pid,
                spawn=spawn,
                height=ph,
                foot_y=foot_y,
                x=xs,
                segments=segments,
                step_freq=rng.uniform(1.2, 2.4),
                step_phase=rng.random(),
                step_amp=rng.uniform(0.05, 0.10),
                wave_freq=rng.uniform(0.5, 1.0),
                wave_phase=rng.random(),
                palette=palette,
                stripe_color=stripe,
                stripe_period=int(rng.integers(2, 5)),
                stripe_vertical=bool(rng.random() < 0.5),
                object_disc=bool(rng.random() < 0.5),
            )
        )
    persons.sort(key=lambda p: (p.foot_y, p.pid))  # back to front
    return Scene(
        video_id=video_id or f"synth{video_index:03d}",
        width=w,
        height=h,
        n_frames=n_frames,
        background=bg,
        clutter=clutter,
        occluder_mask=occ_mask,
        occluder_rgb=occ_rgb,
        persons=tuple(persons),
        light_phase=float(rng.random()),
        debug_colors=debug_colors,
    )


# ----------------------------------------------------------------------------------------------------------
# Annotations
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _KeyframeBox:
    second: int
    pid: int
    box: tuple[int, int, int, int]  # pixel edges x1, y1, x2, y2 (x2, y2 exclusive)
    visible: float
    labels: list[int]


@dataclass
class _VideoResult:
    video_id: str
    n_frames: int
    boxes: list[_KeyframeBox] = field(default_factory=list)
    excluded: list[int] = field(default_factory=list)


def _annotate_keyframe(scene: Scene, frame: Frame, second: int, n: int) -> tuple[list[_KeyframeBox], bool]:
    """Boxes of the sufficiently visible people at keyframe ``second``, and whether the keyframe is to be
    excluded: some person is inside the frame (>= MIN_VISIBLE of it) but hidden (< HIDDEN_VISIBLE
    visible) by other people or pillars."""
    counts = np.bincount(frame.ids.ravel(), minlength=len(scene.persons) + 1)
    out, ambiguous = [], False
    for person in sorted(scene.persons, key=lambda p: p.pid):
        full = frame.full_area.get(person.pid, 0)
        if full == 0:
            continue
        visible = int(counts[person.pid + 1]) / full
        if visible < MIN_VISIBLE:
            in_frame = frame.inframe_area.get(person.pid, 0) / full >= MIN_VISIBLE
            ambiguous |= in_frame and visible < HIDDEN_VISIBLE
            continue
        rows = np.flatnonzero((frame.ids == person.pid + 1).any(axis=1))
        cols = np.flatnonzero((frame.ids == person.pid + 1).any(axis=0))
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        out.append(_KeyframeBox(second, person.pid, box, round(visible, 4), person.segment_at(n).labels()))
    return out, ambiguous


def _frames_and_annotations(scene: Scene, result: _VideoResult) -> Iterator[np.ndarray]:
    """Yield the RGB frames of ``scene`` and fill ``result`` with the keyframe annotations."""
    keyframes = {(s - TIME_ORIGIN_SEC) * FPS: s for s in keyframe_seconds(scene.n_frames // FPS)}
    for n in range(scene.n_frames):
        frame = render_frame(scene, n)
        if n in keyframes:
            boxes, ambiguous = _annotate_keyframe(scene, frame, keyframes[n], n)
            result.boxes.extend(boxes)
            if ambiguous:
                result.excluded.append(keyframes[n])
        yield frame.rgb


def _render_video_job(job: tuple[int, dict[str, Any], str]) -> _VideoResult:
    """Worker: render video ``index`` to ``path`` and return its keyframe annotations."""
    index, params, path = job
    scene = make_scene(
        index,
        seed=params["seed"],
        seconds=params["seconds"],
        width=params["width"],
        height=params["height"],
        debug_colors=params["debug_colors"],
    )
    result = _VideoResult(scene.video_id, scene.n_frames)
    pix_fmt = "yuv444p" if params["crf"] == 0 else "yuv420p"  # x264 is lossless only without chroma subsampling
    write_mp4(path, _frames_and_annotations(scene, result), fps=FPS, crf=params["crf"], pix_fmt=pix_fmt)
    return result


# ----------------------------------------------------------------------------------------------------------
# Writing the layout
# ----------------------------------------------------------------------------------------------------------


def write_label_map(path: str | os.PathLike[str], classes: Sequence[SynthClass] = SYNTH_CLASSES) -> Path:
    """Write an AVA-style ``.pbtxt`` label map (``item {`` / ``  name: "..."`` / ``  id: N`` / ``}``)."""
    text = "".join(f'item {{\n  name: "{c.name}"\n  id: {c.id}\n}}\n' for c in classes)
    path = Path(path)
    write_text_atomic(text, path)
    return path


def _action_frame(results: Sequence[_VideoResult], w: int, h: int) -> pd.DataFrame:
    rows = [
        (r.video_id, f"{b.second:04d}", b.box[0] / w, b.box[1] / h, b.box[2] / w, b.box[3] / h, label, b.pid)
        for r in results
        for b in r.boxes
        for label in b.labels
    ]
    cols = ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id"]
    return pd.DataFrame(rows, columns=cols)


def _person_box_frame(results: Sequence[_VideoResult], w: int, h: int) -> pd.DataFrame:
    """Every annotated person at every keyframe, with or without an action, in the predicted-box layout
    (``video_id,timestamp,x1,y1,x2,y2,,1.0``: empty action, score 1). Written with the action CSV's
    coordinate text, so a loader that merges boxes by their text (``AVA.TRAIN_PREDICT_BOX_LISTS``) joins each
    to its labels and keeps the people with no action as negatives."""
    rows = [
        (r.video_id, f"{b.second:04d}", b.box[0] / w, b.box[1] / h, b.box[2] / w, b.box[3] / h, "", 1.0)
        for r in results
        for b in r.boxes
    ]
    cols = ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score"]
    return pd.DataFrame(rows, columns=cols)


def _coco(results: Sequence[_VideoResult], w: int, h: int) -> dict[str, Any]:
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for r in results:
        by_second: dict[int, list[_KeyframeBox]] = {}
        for b in r.boxes:
            by_second.setdefault(b.second, []).append(b)
        for second in keyframe_seconds(r.n_frames // FPS):
            image_id = len(images) + 1
            n = (second - TIME_ORIGIN_SEC) * FPS
            images.append(
                {
                    "id": image_id,
                    "file_name": f"{r.video_id}/{frame_file_name(r.video_id, n)}",
                    "width": w,
                    "height": h,
                    "video_id": r.video_id,
                    "timestamp": second,
                }
            )
            for b in by_second.get(second, []):
                bw, bh = b.box[2] - b.box[0], b.box[3] - b.box[1]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": 1,
                        "bbox": [b.box[0], b.box[1], bw, bh],
                        "area": bw * bh,
                        "iscrowd": 0,
                        "person_id": b.pid,
                        "visible_fraction": b.visible,
                    }
                )
    return {
        "info": {"description": "SynthAVA person boxes on keyframes (file names relative to frames/)"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }


def _write_split_annotations(out: Path, split: str, results: Sequence[_VideoResult], w: int, h: int) -> int:
    ann = out / "annotations"
    actions = _action_frame(results, w, h)
    write_csv_atomic(actions, ann / f"ava_{split}_v2.2.csv", header=False, float_format="%.3f")
    write_csv_atomic(
        _person_box_frame(results, w, h), ann / PERSON_BOXES_NAME.format(split=split), header=False,
        float_format="%.3f",
    )  # fmt: skip
    excluded = pd.DataFrame(
        [(r.video_id, f"{s:04d}") for r in results for s in r.excluded], columns=["video_id", "second"]
    )
    write_csv_atomic(excluded, ann / f"ava_{split}_excluded_timestamps_v2.2.csv", header=False)
    write_json_atomic(_coco(results, w, h), ann / f"coco_person_{split}.json", indent=1, sort_keys=True)
    return len(actions)


@dataclass
class SynthSummary:
    """What :func:`generate` produced (or found already there, ``cached``)."""

    out_dir: Path
    train_videos: list[str]
    val_videos: list[str]
    frames_per_video: int
    train_rows: int
    val_rows: int
    cached: bool

    def describe(self) -> str:
        """One-line human-readable summary."""
        state = "already complete" if self.cached else "generated"
        return (
            f"SynthAVA {state} in {self.out_dir}: {len(self.train_videos)} train + "
            f"{len(self.val_videos)} val videos x {self.frames_per_video} frames; "
            f"{self.train_rows} train / {self.val_rows} val action rows"
        )


def _params(**kw: Any) -> dict[str, Any]:
    return {"generator_version": GENERATOR_VERSION, **kw}


def generate(
    out_dir: str | os.PathLike[str],
    *,
    videos: int = 8,
    seconds: int = 20,
    seed: int = 0,
    width: int = 192,
    height: int = 144,
    val_fraction: float = 0.25,
    crf: int = 0,
    jpeg_quality: int = 95,
    debug_colors: bool = False,
    workers: int = 0,
    progress: bool = True,
) -> SynthSummary:
    """Generate SynthAVA under ``out_dir`` (see the module docstring for the layout).

    Args:
        out_dir: output folder (created).
        videos: number of videos (>= 2); the last ``max(1, round(videos * val_fraction))`` are val.
        seconds: length of each video in seconds (>= 5: keyframes 902 .. 900 + seconds - 2).
        seed: random seed; the same parameters give the same files (the MP4s: the same decoded frames).
        width, height: frame size in pixels (even numbers, for H.264 4:2:0).
        val_fraction: share of videos in the val split.
        crf: x264 quality of the MP4s; 0 (default): lossless (4:4:4), so the decoded frames, the JPEGs and
            every number computed from them are the same on every run. A lossy x264 bitstream is not: the same
            frames and settings (one thread) sporadically encode differently (measured: 2 of 30 encodes of one
            video; two fresh 24-video demos differed in 2 of 4 videos checked, from frame 8 on), which made
            two fresh ``make demo`` runs give different numbers.
        jpeg_quality: JPEG quality of the extracted frames.
        debug_colors: flat background, each person one flat unique colour, held objects white (for tests
            and the demo).
        workers: processes for rendering and frame extraction (0: this process only).
        progress: progress bars.

    If ``out_dir`` already holds a complete dataset made with the same parameters (its
    ``annotations/synth_meta.json``, written last, matches), nothing is done.
    """
    out = Path(out_dir)
    if videos < 2:
        raise ValueError(f"videos={videos}: need at least 2 (one train, one val)")
    if seconds < 5:
        raise ValueError(f"seconds={seconds}: need at least 5 (keyframes run 902 .. 900 + seconds - 2)")
    if width % 2 or height % 2 or width < 32 or height < 32:
        raise ValueError(f"frame size {width}x{height}: width and height must be even and >= 32")
    params = _params(
        videos=videos,
        seconds=seconds,
        seed=seed,
        width=width,
        height=height,
        val_fraction=val_fraction,
        crf=crf,
        jpeg_quality=jpeg_quality,
        debug_colors=debug_colors,
    )
    n_val = max(1, round(videos * val_fraction))
    if n_val >= videos:
        raise ValueError(f"val_fraction={val_fraction} leaves no training video out of {videos}")
    ids = [f"synth{i:03d}" for i in range(videos)]
    split = {"train": ids[: videos - n_val], "val": ids[videos - n_val :]}

    meta_path = out / "annotations" / META_NAME
    cached = _read_meta(meta_path)
    if cached is not None and cached.get("params") == params and _layout_complete(out, split):
        return SynthSummary(
            out,
            split["train"],
            split["val"],
            seconds * FPS,
            cached["rows"]["train"],
            cached["rows"]["val"],
            True,
        )
    meta_path.unlink(missing_ok=True)
    _remove_stale(out, ids)

    started = time.monotonic()
    jobs = [(i, params, str(out / "videos" / f"{vid}.mp4")) for i, vid in enumerate(ids)]
    from tqdm import tqdm

    # one bar for the whole generation: rendering each video, then extracting each split's frames
    bar = tqdm(total=videos + len(split), desc="synth", unit="step", disable=not progress, dynamic_ncols=True)
    if workers > 0:
        # spawned, not forked: a fork inherits the parent's native thread pools (OpenBLAS, FFmpeg) mid-state, and
        # forked workers were seen to produce different bytes from the same input on a loaded machine
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = []
            for r in pool.map(_render_video_job, jobs):
                results.append(r)
                bar.update()
    else:
        results = []
        for job in jobs:
            results.append(_render_video_job(job))
            bar.update()
    logger.info("rendered %d videos in %.1f s", videos, time.monotonic() - started)

    frames_root = out / "frames"
    for name, vids in split.items():
        summary = prepare(
            [out / "videos" / f"{v}.mp4" for v in vids],
            frames_root,
            out / "frame_lists" / f"{name}.csv",
            workers=workers,
            start_sec=0.0,
            end_sec=float(seconds),
            jpeg_quality=jpeg_quality,
            progress=False,
        )
        bar.update()
        if not summary.ok:
            bar.close()
            raise RuntimeError(f"frame extraction of SynthAVA videos failed: {summary.describe()}")
    bar.close()

    by_id = {r.video_id: r for r in results}
    rows = {
        name: _write_split_annotations(out, name, [by_id[v] for v in vids], width, height)
        for name, vids in split.items()
    }
    write_label_map(out / "annotations" / LABEL_MAP_NAME)
    write_label_map(out / "annotations" / EVAL_LABEL_MAP_NAME)
    meta = {
        "params": params,
        "fps": FPS,
        "time_origin_sec": TIME_ORIGIN_SEC,
        "keyframe_seconds": [TIME_ORIGIN_SEC + 2, TIME_ORIGIN_SEC + seconds - 2],
        "frames_per_video": seconds * FPS,
        "alias_stride": ALIAS_STRIDE,
        "min_visible": MIN_VISIBLE,
        "hidden_visible": HIDDEN_VISIBLE,
        "classes": [asdict(c) for c in SYNTH_CLASSES],
        "split": split,
        "rows": rows,
        "excluded": {name: sum(len(by_id[v].excluded) for v in vids) for name, vids in split.items()},
        "label_map": LABEL_MAP_NAME,
        "eval_label_map": EVAL_LABEL_MAP_NAME,
    }
    write_json_atomic(meta, meta_path, indent=1, sort_keys=True)
    return SynthSummary(out, split["train"], split["val"], seconds * FPS, rows["train"], rows["val"], False)


def _read_meta(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return meta if isinstance(meta, dict) else None


def _layout_complete(out: Path, split: dict[str, list[str]]) -> bool:
    ann = out / "annotations"
    needed = [ann / LABEL_MAP_NAME, ann / EVAL_LABEL_MAP_NAME]
    for name, vids in split.items():
        needed += [
            out / "frame_lists" / f"{name}.csv",
            ann / f"ava_{name}_v2.2.csv",
            ann / f"coco_person_{name}.json",
        ]
        needed += [out / "videos" / f"{v}.mp4" for v in vids]
        needed += [out / "frames" / v / DONE_MARKER for v in vids]
    return all(p.is_file() for p in needed)


def _remove_stale(out: Path, keep: Sequence[str]) -> None:
    """Remove videos and frame folders of an earlier, different run (only SynthAVA's own names)."""
    pattern = re.compile(r"^synth\d{3}$")
    for p in sorted((out / "videos").glob("synth*.mp4")):
        if pattern.match(p.stem) and p.stem not in keep:
            p.unlink()
    for p in sorted((out / "frames").glob("synth*")):
        if p.is_dir() and pattern.match(p.name) and p.name not in keep:
            shutil.rmtree(p)


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m ava_tools.synth``."""
    p = argparse.ArgumentParser(description="Generate SynthAVA, a synthetic dataset in the AVA layout.")
    add_common_arguments(p)
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--videos", type=int, default=8, help="number of videos (default 8)")
    p.add_argument("--seconds", type=int, default=20, help="seconds per video (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--width", type=int, default=192, help="frame width (default 192)")
    p.add_argument("--height", type=int, default=144, help="frame height (default 144)")
    p.add_argument("--val-fraction", type=float, default=0.25, help="share of val videos (default 0.25)")
    p.add_argument(
        "--crf", type=int, default=0,
        help="x264 CRF of the videos (default 0: lossless, so that the frames are the same on every run)",
    )
    p.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality of the frames (default 95)")
    p.add_argument("--debug-colors", action="store_true", help="flat colours, one per person (tests)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default 0: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(args: argparse.Namespace) -> int:
    """Run the CLI; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    summary = generate(
        args.out,
        videos=args.videos,
        seconds=args.seconds,
        seed=args.seed,
        width=args.width,
        height=args.height,
        val_fraction=args.val_fraction,
        crf=args.crf,
        jpeg_quality=args.jpeg_quality,
        debug_colors=args.debug_colors,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(summary.describe())
    return 0


def cli(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``ava-synth``."""
    sys.exit(run_cli(main, get_args_parser(), argv))


if __name__ == "__main__":
    cli()
