#!/usr/bin/python3
"""Judge anonymization from outside, with a detector visionstack does not use.

Reads a JSON job on stdin:
  {"items": [{"processed": "p.png", "reference": "r.png", "boxes": [[x, y, w, h], ...]}]}
where reference is the original at the processed image's size and boxes are the
anonymized faces in pixels. For each box it reports whether any of OpenCV's Haar
cascades (frontal default/alt/alt2 and profile, run for recall: scale step 1.05,
minNeighbors 2, profile also mirrored; at most 1024 px) finds a face
centred inside it, on the processed image and on the reference, and the SSIM of
the box between processed and reference at face scale (64x64). Writes JSON on stdout.
"""
import json
import sys

import cv2
import numpy as np

CASCADES = [
    "haarcascade_frontalface_default.xml",
    "haarcascade_frontalface_alt.xml",
    "haarcascade_frontalface_alt2.xml",
    "haarcascade_profileface.xml",
]


def load_cascades():
    out = []
    for name in CASCADES:
        c = cv2.CascadeClassifier(cv2.data.haarcascades + name) if hasattr(cv2, "data") else None
        if c is None or c.empty():
            c = cv2.CascadeClassifier("/usr/share/opencv4/haarcascades/" + name)
        if c.empty():
            sys.exit("cannot load cascade " + name)
        out.append(c)
    return out


def detect(cascades, gray):
    # Detect at most 1024 px on the long side (faces stay far above minSize) and map back.
    scale = min(1.0, 1024.0 / max(gray.shape))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    w = small.shape[1]
    found = []
    for c, name in zip(cascades, CASCADES):
        passes = [(small, False)]
        if "profile" in name:  # the profile cascade sees one side; mirror for the other
            passes.append((cv2.flip(small, 1), True))
        for img, mirrored in passes:
            for (x, y, bw, bh) in c.detectMultiScale(img, scaleFactor=1.1, minNeighbors=2, minSize=(16, 16)):
                if mirrored:
                    x = w - x - bw
                found.append(tuple(int(v / scale) for v in (x, y, bw, bh)))
    return found


def centred_in(det, box):
    x, y, w, h = det
    cx, cy = x + w / 2, y + h / 2
    bx, by, bw, bh = box
    return bx <= cx <= bx + bw and by <= cy <= by + bh


def ssim(a, b):
    """Mean SSIM (Wang et al. 2004), 11x11 Gaussian window, sigma 1.5, computed on the
    two crops resized to 64x64: the scale of a face's structure (eyes, nose, mouth).
    At full resolution an 11 px window inside a 250 px face sees only smooth skin,
    where SSIM stays high whatever was done to the face."""
    a = cv2.resize(a, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float64)
    b = cv2.resize(b, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(s.mean())


def main():
    job = json.load(sys.stdin)
    cascades = load_cascades()
    results = []
    for item in job["items"]:
        proc = cv2.imread(item["processed"], cv2.IMREAD_GRAYSCALE)
        ref = cv2.imread(item["reference"], cv2.IMREAD_GRAYSCALE)
        if proc is None or ref is None or proc.shape != ref.shape:
            sys.exit("cannot read %s / %s or sizes differ" % (item["processed"], item["reference"]))
        dp, dr = detect(cascades, proc), detect(cascades, ref)
        boxes = []
        for box in item["boxes"]:
            x, y, w, h = [int(v) for v in box]
            x0, y0 = max(x, 0), max(y, 0)
            x1, y1 = min(x + w, proc.shape[1]), min(y + h, proc.shape[0])
            s = ssim(proc[y0:y1, x0:x1], ref[y0:y1, x0:x1]) if x1 - x0 >= 11 and y1 - y0 >= 11 else 0.0
            boxes.append({
                "box": [x, y, w, h],
                "facesInProcessed": sum(1 for d in dp if centred_in(d, box)),
                "facesInReference": sum(1 for d in dr if centred_in(d, box)),
                "ssim": round(s, 4),
            })
        results.append({"processed": item["processed"], "boxes": boxes})
    json.dump({"opencv": cv2.__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
