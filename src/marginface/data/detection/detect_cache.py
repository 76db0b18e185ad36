"""The faces the detector found in each photo, kept by the photo's content, so that a photo is
detected once however many pairs name it, however many models are evaluated on it, and (with a
cache folder) however many runs read it.

A photo's key is the SHA-256 of its file's bytes (the same photo under two names is one entry; an
edited photo is a new one). The entries of one detector setting live in their own sub-folder,
named by a digest of the settings (:meth:`marginface.data.detection.detect.FaceDetector.settings`:
minimum face size, thresholds, pyramid factor and a digest of the weights), so changing a
detector option never reads another option's faces. All the faces of a photo are kept (which
one is used, ``--select``, is chosen after the look-up). The device is not part of the settings:
a GPU and a CPU find the same faces up to float rounding.

On disk: ``FOLDER/<settings digest>/<2 hex>/<sha256>.json``, written under a temporary name and
renamed (a reader sees a whole file or none; no fsync: a cache entry lost in a crash is only
detected again). A file that is not a valid entry (damaged, truncated, too large, hostile) is
ignored: the photo is detected again and the entry rewritten. Nothing in an entry is run; it is
JSON numbers checked for shape and finiteness.

The default folder: ``$MARGINFACE_DETECT_CACHE``, else ``$XDG_CACHE_HOME/marginface/detections``
(``~/.cache/marginface/detections``); :func:`default_cache_folder`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from marginface.data.detection.faces import Face

#: Environment variable naming the detection cache folder (``off`` = keep it in memory only).
CACHE_ENV = "MARGINFACE_DETECT_CACHE"
#: A cache entry larger than this is not one (a photo's faces take well under a kilobyte each).
MAX_ENTRY_BYTES = 256 * 1024


def default_cache_folder() -> Path | None:
    """``$MARGINFACE_DETECT_CACHE`` (None when it is ``off``), else
    ``$XDG_CACHE_HOME/marginface/detections``, else ``~/.cache/marginface/detections``."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return None if given.strip().lower() == "off" else Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "marginface" / "detections"


def content_key(data: bytes) -> str:
    """A photo's key: the SHA-256 of its encoded bytes (hex)."""
    return hashlib.sha256(data).hexdigest()


def settings_digest(settings: dict[str, Any]) -> str:
    """A short digest naming one detector setting's sub-folder."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _numbers(value: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if array.shape != shape or not np.isfinite(array).all():
        return None
    return array


def _faces_from_json(entry: Any) -> list | None:
    """The faces of a decoded entry, or None when it is not a valid one."""
    if not isinstance(entry, dict) or not isinstance(entry.get("faces"), list):
        return None
    faces = []
    for item in entry["faces"]:
        if not isinstance(item, dict):
            return None
        box = _numbers(item.get("box"), (4,))
        points = _numbers(item.get("landmarks"), (5, 2))
        score = item.get("score")
        if box is None or points is None or isinstance(score, bool):
            return None
        if not isinstance(score, int | float) or not math.isfinite(score) or not 0 <= score <= 1:
            return None
        faces.append(Face(box, points, float(score)))
    return faces


def _faces_to_json(faces: list) -> str:
    return json.dumps(
        {
            "faces": [
                {
                    "box": [float(v) for v in f.box],
                    "landmarks": [[float(x), float(y)] for x, y in f.landmarks],
                    "score": float(f.score),
                }
                for f in faces
            ]
        }
    )


class DetectionCache:
    """Faces by photo content for one detector setting: in memory, and in ``folder`` if given.

    Args:
        settings: the detector's settings (a JSON-able dict); entries of other settings are
            never read.
        folder: the cache folder (None: memory only, for this process).

    :attr:`hits` and :attr:`misses` count look-ups; :attr:`write_error` holds the first error
    writing the folder (the cache then goes on in memory only).
    """

    def __init__(self, settings: dict[str, Any], folder: str | os.PathLike | None = None) -> None:
        self.settings = dict(settings)
        self.root = None if folder is None else Path(folder) / settings_digest(self.settings)
        self.memory: dict[str, list] = {}
        self.hits = 0
        self.misses = 0
        self.write_error: str | None = None

    def _path(self, key: str) -> Path | None:
        return None if self.root is None else self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> list | None:
        """The faces stored for ``key`` (a list, possibly empty: no face), or None."""
        faces = self.memory.get(key)
        if faces is None:
            faces = self._read(key)
            if faces is not None:
                self.memory[key] = faces
        if faces is None:
            self.misses += 1
        else:
            self.hits += 1
        return faces

    def _read(self, key: str) -> list | None:
        path = self._path(key)
        try:
            if path is None or not path.is_file():  # not a FIFO or a device
                return None
            with open(path, "rb") as f:
                raw = f.read(MAX_ENTRY_BYTES + 1)
            if len(raw) > MAX_ENTRY_BYTES:
                return None
            return _faces_from_json(json.loads(raw))
        except (OSError, ValueError, RecursionError):
            return None  # unreadable or not an entry: detected again

    def put(self, key: str, faces: list) -> None:
        """Store the faces of ``key`` (in memory; in the folder unless writing it failed)."""
        self.memory[key] = list(faces)
        path = self._path(key)
        if path is None or self.write_error is not None:
            return
        from marginface.files import atomic_write_text

        try:  # no fsync: an entry lost in a crash is only detected again
            atomic_write_text(path, _faces_to_json(faces), sync=False)
        except OSError as exc:
            self.write_error = f"{type(exc).__name__}: {exc}"
