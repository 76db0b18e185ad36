"""The MTCNN detector: speed on this machine, and quality from a ``marginface align --detect`` run.

Speed: images per second on scikit-image's astronaut photo (shipped with the test dependency)
resized to 250x250 (LFW's size) and to 1024x1024, one image at a time and, at 250x250, in
batches of 8 (one P-Net pass per pyramid level for the batch), with the default minimum face
size of 20 px (the pyramid's first level is the image scaled by 12/20).

Quality, from the detections.csv of an ``align --detect`` run over single-person portraits:
- hit rate: photos with at least one face / readable photos;
- landmark error after alignment: the distance, in pixels of the 112x112 crop, between each
  aligned landmark and the ArcFace template point (the residual of the similarity fit: what is
  left is pose, expression and detector error), per landmark and overall, also as a fraction of
  the template's inter-ocular distance (35.2 px).

Mirror consistency, ``--mirror PHOTOS_FOLDER --count N``: detect on N photos and on their mirror
images; the mirror's landmarks, mirrored back (x -> W - 1 - x, left and right swapped), should
fall on the photo's. Their mean distance, over the inter-ocular distance, measures the detector's
own landmark noise without the face's pose or expression; their mean signed x offset is twice
any left-right bias of the detector's coordinate convention.

Contact sheets: ``--sheet OUT.png`` draws the astronaut under synthetic transforms (top row,
detected landmarks in red) over their aligned crops (bottom row, template points in green);
``--sheet OUT.png --folder ALIGNED`` tiles the crops of an aligned folder, one identity a row.

    python benchmarks/detect.py --threads 1                       # speed
    python benchmarks/detect.py --csv ALIGNED/detections.csv      # quality of a run
    python benchmarks/detect.py --sheet docs/images/detect_astronaut.jpg
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from marginface.data.detection.align import ARCFACE_TEMPLATE, similarity_transform
from marginface.data.detection.detect import FaceDetector

LANDMARKS = ("left eye", "right eye", "nose", "left mouth", "right mouth")


def astronaut() -> Image.Image:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise SystemExit("needs scikit-image (pip install -e .[dev]) for data/astronaut.png")
    return Image.open(Path(spec.origin).parent / "data" / "astronaut.png").convert("RGB")


def speed(detector: FaceDetector, seconds: float) -> dict[str, float]:
    photo = astronaut()
    out = {}
    for size, batch in ((250, 1), (250, 8), (1024, 1)):
        image = np.asarray(photo.resize((size, size), Image.BILINEAR))
        images = [image] * batch
        found = detector.detect(images)  # warm up
        assert all(len(f) == 1 for f in found), f"expected one face per image at {size}"
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            detector.detect(images)
            count += batch
        out[f"{size}x{size} batch {batch}"] = count / (time.perf_counter() - start)
    return out


def quality(csv_path: Path) -> dict:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    ok = [r for r in rows if r["status"] == "ok"]
    no_face = [r["path"] for r in rows if r["status"] == "no_face"]
    readable = len(ok) + len(no_face)
    errors = []
    for r in ok:
        marks = np.array([[float(r[f"lx{k}"]), float(r[f"ly{k}"])] for k in range(1, 6)])
        fit = similarity_transform(marks, ARCFACE_TEMPLATE)
        aligned = marks @ fit[:, :2].T + fit[:, 2]
        errors.append(np.linalg.norm(aligned - ARCFACE_TEMPLATE, axis=1))
    errors = np.array(errors)
    iod = float(np.linalg.norm(ARCFACE_TEMPLATE[1] - ARCFACE_TEMPLATE[0]))
    per_photo = errors.mean(axis=1)
    return {
        "photos": len(rows),
        "readable": readable,
        "faces_found": len(ok),
        "hit_rate": len(ok) / max(readable, 1),
        "no_face": no_face,
        "several_faces": sum(int(r["faces"]) > 1 for r in ok),
        "landmark_error_px_mean": float(errors.mean()),
        "landmark_error_px_median_per_photo": float(np.median(per_photo)),
        "landmark_error_px_p95_per_photo": float(np.percentile(per_photo, 95)),
        "landmark_error_over_iod_mean": float(errors.mean() / iod),
        "landmark_error_px_by_point": dict(
            zip(LANDMARKS, errors.mean(axis=0).round(3).tolist(), strict=True)
        ),
    }


def astronaut_sheet(detector: FaceDetector, tile: int = 160) -> Image.Image:
    from PIL import ImageDraw

    from marginface.data.detection.detect import FaceAligner

    photo = astronaut()
    variants = [
        photo,
        photo.rotate(25, resample=Image.BILINEAR),
        photo.transpose(Image.FLIP_LEFT_RIGHT).rotate(-15, resample=Image.BILINEAR),
        photo.crop((100, 0, 400, 300)).resize((180, 180), Image.BILINEAR),
        photo.resize((1024, 1024), Image.BILINEAR).crop((250, 50, 750, 550)),
    ]
    aligner = FaceAligner(detector, image_size=tile)
    sheet = Image.new("RGB", (len(variants) * (tile + 4) + 4, 2 * tile + 12), "white")
    for k, image in enumerate(variants):
        face = aligner.find(image)
        crop = aligner.align(image, face)
        shown = image.copy()
        draw = ImageDraw.Draw(shown)
        r = max(2, image.width // 100)
        for x, y in face.landmarks:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 0, 0))
        sheet.paste(shown.resize((tile, tile), Image.BILINEAR), (4 + k * (tile + 4), 4))
        draw = ImageDraw.Draw(crop)
        for x, y in ARCFACE_TEMPLATE * tile / 112:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), outline=(0, 255, 0))
        sheet.paste(crop, (4 + k * (tile + 4), tile + 8))
    return sheet


def folder_sheet(folder: Path, rows: int = 8, columns: int = 10) -> Image.Image:
    identities = sorted(p for p in folder.iterdir() if p.is_dir())[:rows]
    sheet = Image.new("RGB", (columns * 114, len(identities) * 114), "white")
    for r, identity in enumerate(identities):
        for c, path in enumerate(sorted(identity.glob("*.png"))[:columns]):
            sheet.paste(
                Image.open(path).convert("RGB").resize((112, 112)), (c * 114 + 1, r * 114 + 1)
            )
    return sheet


def mirror_consistency(detector: FaceDetector, folder: Path, count: int) -> dict:
    from marginface.data.detection.detect import select_face

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    files = files[:: max(1, len(files) // count)][:count]
    distances, offsets = [], []
    for path in files:
        image = Image.open(path).convert("RGB")
        size = (image.height, image.width)
        face = select_face(detector.detect_one(image), size)
        mirrored = select_face(detector.detect_one(image.transpose(Image.FLIP_LEFT_RIGHT)), size)
        if face is None or mirrored is None:
            continue
        back = mirrored.landmarks[[1, 0, 2, 4, 3]] * [-1, 1] + [image.width - 1, 0]
        iod = np.linalg.norm(face.landmarks[1] - face.landmarks[0])
        distances.append(np.linalg.norm(back - face.landmarks, axis=1).mean() / iod)
        offsets.append((back[:, 0] - face.landmarks[:, 0]).mean() / iod)
    return {
        "photos": len(distances),
        "mean_distance_over_iod": float(np.mean(distances)),
        "median_distance_over_iod": float(np.median(distances)),
        "share_under_0.1_iod": float(np.mean(np.array(distances) < 0.1)),
        "mean_x_offset_over_iod": float(np.mean(offsets)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", type=Path, help="detections.csv of an align --detect run")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per speed case")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mirror", type=Path, help="a folder of photos: mirror consistency")
    parser.add_argument("--count", type=int, default=200, help="photos for --mirror")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet here")
    parser.add_argument("--folder", type=Path, help="with --sheet: an aligned folder to tile")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mirror is not None:
        detector = FaceDetector(device=args.device)
        print(json.dumps(mirror_consistency(detector, args.mirror, args.count), indent=2))
        return
    if args.sheet is not None:
        if args.folder is not None:
            folder_sheet(args.folder).save(args.sheet)
        else:
            astronaut_sheet(FaceDetector(device=args.device)).save(args.sheet)
        print(f"wrote {args.sheet}")
        return
    if args.csv is not None:
        print(json.dumps(quality(args.csv), indent=2))
        return
    detector = FaceDetector(device=args.device)
    result = {"threads": torch.get_num_threads(), "device": args.device}
    result.update({k: round(v, 2) for k, v in speed(detector, args.seconds).items()})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
