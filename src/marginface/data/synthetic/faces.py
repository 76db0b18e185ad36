"""Drawing synthetic faces: identity parameters and the renderer behind ``synthetic:`` specs.

:func:`identity_params` draws a face from ``(seed, identity)``: shape, skin tone, eyes, brows,
nose, mouth, hair style and colour, beard, glasses, mole, blush, from small shared palettes;
about half of the identities are "siblings" of one of :data:`NUM_FAMILIES` family faces, so
unrelated identities can look alike. :func:`render_face` draws one picture of it from
``(seed, identity, image)``: pose (roll, pseudo-3D yaw and pitch, shift, scale), expression,
blink, gaze, side shading, lighting, colour cast, background, clothes, occlusion, blur and
noise, with Pillow's ImageDraw on a 2x supersampled canvas.

``difficulty`` scales the variation between pictures of one identity up and the spread between
identities down (see :data:`DIFFICULTY_SCALE`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SKIN_TONES = np.array(
    [
        (255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 145, 105), (176, 120, 85),
        (141, 94, 64), (110, 72, 48), (84, 54, 37), (232, 190, 172), (205, 160, 120),
    ],
    dtype=np.float64,
)  # fmt: skip
HAIR_COLOURS = np.array(
    [
        (25, 20, 18), (60, 40, 28), (100, 66, 40), (140, 70, 35), (205, 170, 100),
        (150, 150, 150), (225, 220, 210), (170, 60, 30),
    ],
    dtype=np.float64,
)  # fmt: skip
EYE_COLOURS = np.array(
    [(60, 40, 25), (95, 65, 35), (50, 90, 140), (70, 110, 70), (110, 110, 120)], dtype=np.float64
)
FRAME_COLOURS = np.array([(20, 20, 20), (120, 80, 40), (180, 180, 190), (140, 20, 30)])
HAIR_STYLES = ("bald", "buzz", "short", "fringe", "side_part", "long", "tall", "curly")
BEARDS = ("none", "moustache", "goatee", "full", "stubble")
NUM_FAMILIES = 500
#: Internal strength of difficulty 1.0, calibrated so that a small CNN trained with plain softmax
#: on synthetic:1000x20 at 32 px reaches about 93 % held-out verification accuracy
#: (benchmarks/synthetic_difficulty.py), leaving the margin heads room to differ.
DIFFICULTY_SCALE = 1.8

_RING = 2 * np.pi * np.arange(24) / 24
_COS, _SIN = np.cos(_RING), np.sin(_RING)
_CENTRE = np.array([0.5, 0.55])


# ---------------------------------------------------------------------------------------------
# identity parameters
# ---------------------------------------------------------------------------------------------
def _z(rng: np.random.Generator, n: int | None = None) -> np.ndarray | float:
    return np.clip(rng.standard_normal(n), -2.5, 2.5)


def _raw_identity(rng: np.random.Generator, spread: float) -> dict:
    """Draw one face's parameters; continuous ones spread by ``spread`` around the average."""
    z = _z(rng, 24) * spread
    style = HAIR_STYLES[rng.integers(len(HAIR_STYLES))]
    beard = BEARDS[rng.integers(len(BEARDS))] if rng.random() < 0.35 else "none"
    return {
        "skin": SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.normal(0, 5, 3),
        "hair": HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.normal(0, 6, 3),
        "eye_colour": EYE_COLOURS[rng.integers(len(EYE_COLOURS))],
        "style": style,
        "beard": beard,
        "glasses": int(rng.integers(2)) if rng.random() < 0.25 else -1,
        "frame": FRAME_COLOURS[rng.integers(len(FRAME_COLOURS))],
        "mole": (rng.uniform(0.3, 0.7), rng.uniform(0.55, 0.85)) if rng.random() < 0.3 else None,
        "face_rx": 0.33 + 0.03 * z[0],
        "face_ry": 0.46 + 0.025 * z[1],
        "jaw": 0.72 + 0.1 * z[2],
        "eye_dx": 0.155 + 0.014 * z[3],
        "eye_y": 0.46 + 0.018 * z[4],
        "eye_rx": 0.052 + 0.008 * z[5],
        "eye_ratio": 0.55 + 0.09 * z[6],
        "eye_tilt": 0.12 * z[7],
        "brow_gap": 0.075 + 0.014 * z[8],
        "brow_thick": 0.024 + 0.007 * z[9],
        "brow_len": 0.11 + 0.018 * z[10],
        "brow_angle": 0.15 * z[11],
        "brow_arch": 0.018 + 0.012 * z[12],
        "nose_len": 0.17 + 0.022 * z[13],
        "nose_w": 0.05 + 0.011 * z[14],
        "mouth_y": 0.81 + 0.018 * z[15],
        "mouth_w": 0.12 + 0.018 * z[16],
        "lip": 0.028 + 0.008 * z[17],
        "lip_red": 0.35 + 0.12 * z[18],
        "ear": 0.075 + 0.012 * z[19],
        "hairline": 0.2 + 0.04 * z[20],
        "hair_volume": 0.06 + 0.025 * z[21],
        "part": float(np.sign(z[22]) or 1.0),
        "chin": 0.5 + 0.25 * z[23],
        "blush": float(rng.uniform(0.0, 0.3)),
    }


def _blend(own: dict, family: dict, keep: float) -> dict:
    """An identity close to ``family``: continuous values move ``keep`` of the way to ``own``."""
    out = {}
    for key, value in family.items():
        mine = own[key]
        if isinstance(value, float) and key != "part":
            out[key] = value + keep * (mine - value)
        elif key in ("skin", "hair"):
            out[key] = value + keep * (mine - value) * 0.5
        else:
            out[key] = value
    return out


@lru_cache(maxsize=8192)
def identity_params(seed: int, identity: int, difficulty: float = 1.0) -> dict:
    """The face parameters of ``identity`` (absolute index in the synthetic universe)."""
    strength = difficulty * DIFFICULTY_SCALE
    spread = 1.0 / (0.5 + 0.5 * strength)
    rng = np.random.default_rng([seed, identity, 1])
    own = _raw_identity(rng, spread)
    if rng.random() < min(0.6, 0.3 * strength):  # a sibling of a family face: a look-alike
        family = int(rng.integers(NUM_FAMILIES))
        base = _raw_identity(np.random.default_rng([seed, family, 2]), spread)
        own = _blend(own, base, keep=0.45)
    return own


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------
def _ellipse(cx: float, cy: float, rx: float, ry: float, tilt: float = 0.0) -> np.ndarray:
    x, y = rx * _COS, ry * _SIN
    if tilt:
        c, s = math.cos(tilt), math.sin(tilt)
        x, y = c * x - s * y, s * x + c * y
    return np.stack([cx + x, cy + y], axis=1)


def _colour(rgb: np.ndarray | tuple, scale: float = 1.0) -> tuple[int, int, int]:
    r, g, b = (int(min(255, max(0, v * scale))) for v in rgb)
    return (r, g, b)


class _Pose:
    """Maps unit face coordinates (with a depth for pseudo-3D yaw/pitch) to canvas pixels."""

    def __init__(self, size: float, angle: float, scale: float, shift: np.ndarray, yaw: float,
                 pitch: float) -> None:  # fmt: skip
        c, s = math.cos(angle), math.sin(angle)
        self.matrix = size * scale * np.array([[c, -s], [s, c]])
        self.offset = size * (_CENTRE + shift)
        self.turn = np.array([yaw, pitch])
        self.yaw = yaw

    def __call__(self, points: np.ndarray, depth: float = 0.0) -> list[tuple[float, float]]:
        pts = points - _CENTRE
        if depth:
            pts = pts + depth * self.turn
        pts[:, 0] *= 1.0 - 0.2 * abs(self.yaw)  # a turned head looks narrower
        out = pts @ self.matrix.T + self.offset
        return [tuple(p) for p in out.tolist()]

    def width(self, w: float) -> int:
        return max(1, int(round(w * abs(self.matrix[0, 0] + 1j * self.matrix[1, 0]))))


def _face_outline(p: dict, jaw: float) -> np.ndarray:
    t = _RING
    lower = np.clip(np.sin(t), 0, 1)
    x = p["face_rx"] * np.cos(t) * (1 - (1 - jaw) * lower**1.5)
    y = p["face_ry"] * np.sin(t) * (1 + 0.04 * p["chin"] * lower**4)
    return np.stack([0.5 + x, 0.52 + y], axis=1)


def _hair_cap(p: dict, lift: float) -> np.ndarray:
    """The hair on top of the head: the upper face outline grown by the hair volume."""
    rx, ry, vol = p["face_rx"], p["face_ry"], p["hair_volume"] + lift
    t = np.linspace(np.pi, 2 * np.pi, 13)
    outer = np.stack([0.5 + (rx + vol) * np.cos(t), 0.52 + (ry + vol) * np.sin(t)], axis=1)
    hl = 0.52 - ry + p["hairline"]
    style = p["style"]
    if style == "fringe":
        inner = np.array([[0.5 + rx, 0.45], [0.5 + rx * 0.6, hl + 0.1], [0.5, hl + 0.12],
                          [0.5 - rx * 0.6, hl + 0.1], [0.5 - rx, 0.45]])  # fmt: skip
    elif style == "side_part":
        k = p["part"]
        inner = np.array([[0.5 + rx, 0.42], [0.5 + k * rx * 0.5, hl - 0.02], [0.5 - k * 0.1, hl],
                          [0.5 - k * rx * 0.6, hl + 0.06], [0.5 - rx, 0.44]])  # fmt: skip
        if k < 0:
            inner = inner[::-1]
    else:
        inner = np.array([[0.5 + rx, 0.40], [0.5 + rx * 0.7, hl + 0.02], [0.5, hl - 0.01],
                          [0.5 - rx * 0.7, hl + 0.02], [0.5 - rx, 0.40]])  # fmt: skip
    return np.concatenate([outer, inner])


#: the canvas is drawn this many times larger than the picture, then reduced (anti-aliasing)
SUPERSAMPLE = 2


@dataclass(frozen=True)
class _Mouth:
    """Where the mouth lies: its centre height, half width and the smile's curve."""

    y: float
    half_width: float
    curve: float


def _mouth(p: dict, smile: float) -> _Mouth:
    return _Mouth(p["mouth_y"], p["mouth_w"] * (1 + 0.12 * smile), 0.03 * smile)


@dataclass(frozen=True)
class _Variation:
    """What changes between pictures of one identity, drawn from ``(seed, identity, image)``
    in a fixed order (the pixels depend on it): pose, expression, gaze, light, colours,
    glasses taken off, an occluder, blur, colour cast and noise."""

    strength: float
    pose: _Pose
    smile: float
    mouth_open: float
    brow_raise: float
    eye_open: float
    gaze: float
    light_angle: float
    background: tuple[int, int, int]
    shirt: tuple[int, int, int]
    glasses_on: bool
    occluder: tuple[np.ndarray, tuple[int, int, int]] | None
    blur: float
    gain: float
    light_strength: float
    cast: np.ndarray
    noise: np.ndarray | None


def _variation(
    rng: np.random.Generator, strength: float, canvas_size: int, side: int, shape: tuple
) -> _Variation:
    """Every random draw of one picture (``shape``: the output's (height, width, 3))."""
    normal = rng.standard_normal(16)
    uniform = rng.random(16)
    pose = _Pose(
        canvas_size,
        angle=float(np.clip(normal[0] * 0.09 * strength, -0.35, 0.35)),
        scale=float(np.clip(1 + normal[1] * 0.05 * strength, 0.8, 1.2)),
        shift=np.clip(normal[2:4] * 0.03 * strength, -0.1, 0.1),
        yaw=float(np.clip(normal[4] * 0.3 * strength, -0.8, 0.8)),
        pitch=float(np.clip(normal[5] * 0.2 * strength, -0.5, 0.5)),
    )
    closed = uniform[0] < 0.04 * strength  # a blink
    background = tuple(int(v) for v in rng.integers(40, 230, 3))
    shirt = tuple(int(v) for v in rng.integers(20, 235, 3))
    occluder = _occluder(rng, normal, uniform) if uniform[2] < 0.2 * strength else None
    cast = (rng.standard_normal(3) * 10 * strength).astype(np.float32)
    noise_level = 6.0 * strength * float(uniform[11])
    noise = None
    if noise_level > 0.5:
        noise = rng.standard_normal(shape, dtype=np.float32) * noise_level
    return _Variation(
        strength=strength,
        pose=pose,
        smile=float(np.clip(0.25 + normal[6] * 0.45 * strength, -0.6, 1.2)),
        mouth_open=max(0.0, float(normal[7]) * 0.6 * strength - 0.3),
        brow_raise=float(np.clip(normal[8] * 0.012 * strength, -0.03, 0.03)),
        eye_open=0.12 if closed else float(np.clip(1 + normal[9] * 0.12 * strength, 0.6, 1.3)),
        gaze=float(normal[10]),
        light_angle=2 * math.pi * float(uniform[9]),
        background=background,
        shirt=shirt,
        glasses_on=bool(uniform[1] < 1.0 - 0.05 * strength),  # sometimes taken off
        occluder=occluder,
        blur=(float(uniform[8]) ** 2) * 1.2 * strength * side / 64,
        gain=float(np.clip(1 + normal[12] * 0.18 * strength, 0.45, 1.6)),
        light_strength=0.5 * strength * float(uniform[10]),
        cast=cast,
        noise=noise,
    )


def _occluder(
    rng: np.random.Generator, normal: np.ndarray, uniform: np.ndarray
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Something in front of the face: its outline (unit face coordinates) and colour."""
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    if uniform[3] < 0.35:  # a band (scarf, mask, hat brim, hand) across the face
        y0 = 0.15 + 0.7 * uniform[4]
        shape = np.array([[-0.1, y0], [1.1, y0 + 0.1 * normal[11]],
                          [1.1, y0 + 0.15 + 0.1 * uniform[5]], [-0.1, y0 + 0.15]])  # fmt: skip
    else:  # a blob at a random place
        shape = _ellipse(
            0.2 + 0.6 * uniform[4],
            0.2 + 0.7 * uniform[5],
            0.06 + 0.1 * uniform[6],
            0.05 + 0.1 * uniform[7],
        )
    return shape, colour


def render_face(
    seed: int,
    identity: int,
    image: int,
    image_size: tuple[int, int] | int = 112,
    difficulty: float = 1.0,
    with_landmarks: bool = False,
) -> Image.Image | tuple[Image.Image, np.ndarray]:
    """Render image ``image`` of ``identity`` as an RGB Pillow image of ``image_size``.

    Deterministic: the same arguments give the same pixels in any process. With
    ``with_landmarks`` also return the 5 landmarks (5, 2) in pixels (left eye, right eye, nose
    tip, left and right mouth corners; OpenCV's integer pixel-centre convention).
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    p = identity_params(seed, identity, difficulty)
    rng = np.random.default_rng([seed, identity, image, 3])
    side = max(height, width)
    canvas_size = side * SUPERSAMPLE
    variation = _variation(
        rng, difficulty * DIFFICULTY_SCALE, canvas_size, side, (height, width, 3)
    )
    canvas = Image.new("RGB", (canvas_size, canvas_size), variation.background)
    draw = ImageDraw.Draw(canvas)
    _draw_back(draw, p, variation)
    _draw_face(draw, p, variation)
    _draw_hair(draw, p, variation.pose)
    _draw_eyes_and_brows(draw, p, variation)
    _draw_nose(draw, p, variation.pose)
    _draw_mouth(draw, p, variation)
    _draw_marks_and_glasses(draw, p, variation)
    if variation.occluder is not None:
        shape, colour = variation.occluder
        draw.polygon(variation.pose(shape, 0.12), fill=colour)
    out, corner = _finish(canvas, variation, height, width, side)
    if not with_landmarks:
        return out
    return out, _landmarks(p, variation, corner)


def _draw_back(draw: ImageDraw.ImageDraw, p: dict, variation: _Variation) -> None:
    """Behind the face: long hair, neck and shoulders, ears."""
    pose, rx = variation.pose, p["face_rx"]
    shade, hair = _colour(p["skin"], 0.8), _colour(p["hair"])
    if p["style"] == "long":
        back = np.array([[0.5 - rx - 0.06, 0.3], [0.5 - rx - 0.09, 1.1], [0.5 + rx + 0.09, 1.1],
                         [0.5 + rx + 0.06, 0.3]])  # fmt: skip
        draw.polygon(pose(back, -0.05), fill=hair)
    neck = np.array([[0.38, 0.8], [0.37, 1.05], [0.63, 1.05], [0.62, 0.8]])
    draw.polygon(pose(neck, -0.02), fill=shade)
    shoulders = np.array([[0.0, 1.3], [0.02, 1.06], [0.3, 0.97], [0.7, 0.97], [0.98, 1.06],
                          [1.0, 1.3]])  # fmt: skip
    draw.polygon(pose(shoulders, -0.03), fill=variation.shirt)
    for sgn in (-1, 1):
        ear = _ellipse(0.5 + sgn * (rx - 0.005), 0.5, p["ear"] * 0.55, p["ear"])
        draw.polygon(pose(ear, -0.08), fill=shade)


def _draw_face(draw: ImageDraw.ImageDraw, p: dict, variation: _Variation) -> None:
    """The face, shaded on the side away from the light; blush; a full beard or stubble."""
    pose, skin, rx = variation.pose, p["skin"], p["face_rx"]
    outline = _face_outline(p, p["jaw"])
    draw.polygon(pose(outline), fill=_colour(skin, 0.86))
    toward = (
        0.025
        * min(1.0, variation.strength)
        * np.array([math.cos(variation.light_angle), math.sin(variation.light_angle)])
    )
    lit = (outline - [0.5, 0.52]) * 0.93 + [0.5, 0.52] + toward
    draw.polygon(pose(lit), fill=_colour(skin))
    if p["blush"] > 0.08:
        cheek_colour = _colour(skin * (1 - p["blush"]) + np.array([225, 90, 100]) * p["blush"])
        for sgn in (-1, 1):
            cheek = _ellipse(0.5 + sgn * (p["eye_dx"] + 0.03), p["eye_y"] + 0.19, 0.055, 0.035)
            draw.polygon(pose(cheek, 0.05), fill=cheek_colour)
    if p["beard"] in ("full", "stubble"):
        beard_colour = _colour(p["hair"]) if p["beard"] == "full" else _colour(skin, 0.72)
        beard = _face_outline(p, p["jaw"])[1:12]
        beard = np.concatenate(
            [beard, [[0.5 - rx * 0.85, 0.72], [0.5, 0.76], [0.5 + rx * 0.85, 0.72]]]
        )
        draw.polygon(pose(beard, 0.02), fill=beard_colour)


def _draw_hair(draw: ImageDraw.ImageDraw, p: dict, pose: _Pose) -> None:
    """The hair on top, in the identity's style (none when bald)."""
    style = p["style"]
    if style == "bald":
        return
    lift = -0.04 if style == "buzz" else (0.06 if style == "tall" else 0.0)
    cap = _hair_cap(p, lift)
    if style == "curly":
        bumps = 1 + 0.08 * np.cos(np.arange(len(cap)) * 2.7)
        cap = _CENTRE + (cap - _CENTRE) * bumps[:, None]
    draw.polygon(pose(cap, 0.01), fill=_colour(p["hair"]))


def _draw_eyes_and_brows(draw: ImageDraw.ImageDraw, p: dict, variation: _Variation) -> None:
    """Each eye (white, iris and pupil looking aside, the upper lid; a line when closed) and
    its brow."""
    pose, eye_y, eye_open = variation.pose, p["eye_y"], variation.eye_open
    for sgn in (-1, 1):
        ex = 0.5 + sgn * p["eye_dx"]
        tilt = -sgn * p["eye_tilt"]
        erx = p["eye_rx"]
        ery = erx * p["eye_ratio"] * eye_open
        eye = _ellipse(ex, eye_y, erx, ery, tilt)
        draw.polygon(pose(eye, 0.06), fill=(240, 240, 236))
        if eye_open > 0.3:
            look = 0.3 * erx * variation.gaze * min(1.0, variation.strength)
            iris = _ellipse(ex + look, eye_y, erx * 0.5, min(ery, erx * 0.5))
            draw.polygon(pose(iris, 0.07), fill=_colour(p["eye_colour"]))
            pupil = _ellipse(ex + look, eye_y, erx * 0.22, min(ery, erx * 0.22))
            draw.polygon(pose(pupil, 0.07), fill=(10, 10, 10))
        lid = eye[12:] if eye_open > 0.3 else eye[:13]  # upper lid, or the closed eye's line
        draw.line(pose(lid, 0.06), fill=_colour(p["skin"], 0.45), width=pose.width(0.008))
        by = eye_y - p["brow_gap"] - variation.brow_raise
        bl, bt = p["brow_len"], p["brow_thick"]
        inner, outer = ex - sgn * bl * 0.45, ex + sgn * bl * 0.55
        ang = sgn * p["brow_angle"] * 0.1
        brow = np.array([
            [inner, by + ang], [ex, by - p["brow_arch"]], [outer, by - ang + 0.01],
            [outer, by - ang + 0.01 + bt * 0.5], [ex, by - p["brow_arch"] + bt],
            [inner, by + ang + bt],
        ])  # fmt: skip
        draw.polygon(pose(brow, 0.06), fill=_colour(p["hair"], 0.8))


def _nose_tip(p: dict) -> float:
    return p["eye_y"] + p["nose_len"]


def _draw_nose(draw: ImageDraw.ImageDraw, p: dict, pose: _Pose) -> None:
    top = p["eye_y"] + 0.02
    tip = _nose_tip(p)
    nw = p["nose_w"]
    nose = np.array([[0.5 - 0.012, top], [0.5 - nw, tip], [0.5, tip + 0.018], [0.5 + nw, tip],
                     [0.5 + 0.012, top]])  # fmt: skip
    draw.polygon(pose(nose, 0.1), fill=_colour(p["skin"], 0.88))
    for sgn in (-1, 1):
        nostril = _ellipse(0.5 + sgn * nw * 0.55, tip + 0.004, nw * 0.3, 0.009)
        draw.polygon(pose(nostril, 0.1), fill=_colour(p["skin"], 0.45))


def _draw_mouth(draw: ImageDraw.ImageDraw, p: dict, variation: _Variation) -> None:
    """The lips (smiling, open), a moustache or goatee, the inside of an open mouth."""
    pose, skin, hair = variation.pose, p["skin"], _colour(p["hair"])
    mouth = _mouth(p, variation.smile)
    my, mw, lip, curve = mouth.y, mouth.half_width, p["lip"], mouth.curve
    lip_colour = _colour(skin * (1 - p["lip_red"]) + np.array([190, 60, 70]) * p["lip_red"])
    gap = 0.035 * variation.mouth_open
    xs = np.linspace(-1, 1, 9)
    mid = my + curve * (xs**2 - 1) * -1.0 - curve
    upper = np.stack([0.5 + mw * xs, mid - lip * 0.6 * (1 - xs**2) - gap * 0.3], axis=1)
    lower = np.stack([0.5 + mw * xs, mid + lip * (1 - xs**2) + gap], axis=1)
    if p["beard"] in ("moustache", "goatee"):
        tache = np.array([[0.5 - mw * 1.1, my - 0.005], [0.5 - mw * 0.5, my - 0.05],
                          [0.5 + mw * 0.5, my - 0.05], [0.5 + mw * 1.1, my - 0.005],
                          [0.5, my - 0.03]])  # fmt: skip
        draw.polygon(pose(tache, 0.08), fill=hair)
        if p["beard"] == "goatee":
            goatee = _ellipse(0.5, my + 0.1, mw * 0.6, 0.06)
            draw.polygon(pose(goatee, 0.06), fill=hair)
    draw.polygon(pose(np.concatenate([upper, lower[::-1]]), 0.07), fill=lip_colour)
    if gap > 0.004:
        top_edge = np.stack([0.5 + mw * 0.8 * xs, mid - gap * 0.2], 1)
        bottom_edge = np.stack([0.5 + mw * 0.8 * xs[::-1], mid[::-1] + gap * 0.8], 1)
        inside = np.concatenate([top_edge, bottom_edge])
        draw.polygon(pose(inside, 0.07), fill=(60, 20, 25))
    draw.line(pose(np.stack([0.5 + mw * xs, mid], 1), 0.07), fill=_colour(skin, 0.35),
              width=pose.width(0.006))  # fmt: skip


def _draw_marks_and_glasses(draw: ImageDraw.ImageDraw, p: dict, variation: _Variation) -> None:
    """A mole; glasses (round or square lenses and the bridge) unless taken off."""
    pose, eye_y = variation.pose, p["eye_y"]
    if p["mole"] is not None:
        mole = _ellipse(p["mole"][0], p["mole"][1], 0.012, 0.012)
        draw.polygon(pose(mole, 0.05), fill=_colour(p["skin"], 0.35))
    if p["glasses"] < 0 or not variation.glasses_on:
        return
    frame = _colour(p["frame"])
    lw = pose.width(0.012)
    for sgn in (-1, 1):
        ex = 0.5 + sgn * p["eye_dx"]
        if p["glasses"] == 0:
            lens = _ellipse(ex, eye_y + 0.01, 0.085, 0.065)
        else:
            lens = np.array([[ex - 0.09, eye_y - 0.045], [ex + 0.09, eye_y - 0.045],
                             [ex + 0.08, eye_y + 0.06], [ex - 0.08, eye_y + 0.06]])  # fmt: skip
        pts = pose(lens, 0.09)
        draw.line(pts + pts[:1], fill=frame, width=lw)
    bridge = np.array([[0.5 - p["eye_dx"] + 0.085, eye_y], [0.5 + p["eye_dx"] - 0.085, eye_y]])
    draw.line(pose(bridge, 0.1), fill=frame, width=lw)


def _finish(
    canvas: Image.Image, variation: _Variation, height: int, width: int, side: int
) -> tuple[Image.Image, tuple[int, int]]:
    """Reduce the canvas, crop it to ``(height, width)``, then blur, light, colour cast and
    noise; returns the picture and the crop's top-left corner on the reduced canvas."""
    img = canvas.reduce(SUPERSAMPLE)
    left, top = (side - width) // 2, (side - height) // 2
    if (width, height) != img.size:
        img = img.crop((left, top, left + width, top + height))
    if variation.blur > 0.25:
        img = img.filter(ImageFilter.GaussianBlur(variation.blur))
    pixels = np.asarray(img, dtype=np.float32)
    yy = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    slope = math.cos(variation.light_angle) * xx + math.sin(variation.light_angle) * yy
    light = variation.gain * (1 + variation.light_strength * slope)
    pixels = pixels * light[:, :, None] + variation.cast
    if variation.noise is not None:
        pixels += variation.noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), (left, top)


def _landmarks(p: dict, variation: _Variation, corner: tuple[int, int]) -> np.ndarray:
    """The five landmarks in output pixels: the eyes' centres, the nose tip, the mouth's
    corners, each where its part was drawn."""
    pose, eye_y, mouth = variation.pose, p["eye_y"], _mouth(p, variation.smile)
    corners_y = mouth.y - mouth.curve
    marks = np.array([
        pose(np.array([[0.5 - p["eye_dx"], eye_y]]), 0.06)[0],
        pose(np.array([[0.5 + p["eye_dx"], eye_y]]), 0.06)[0],
        pose(np.array([[0.5, _nose_tip(p) + 0.01]]), 0.1)[0],
        pose(np.array([[0.5 - mouth.half_width, corners_y]]), 0.07)[0],
        pose(np.array([[0.5 + mouth.half_width, corners_y]]), 0.07)[0],
    ])  # fmt: skip
    # canvas pixel X -> output pixel (X - (SUPERSAMPLE - 1) / 2) / SUPERSAMPLE, then the crop
    return (marks - (SUPERSAMPLE - 1) / 2) / SUPERSAMPLE - np.array(corner)
