#!/usr/bin/python3
"""Trains the defects example's model and exports it to ONNX, as a team would.

Surface defects on generated textures: scratches (thin dark strokes) and spots (dark or
bright blobs), boxes known because they are drawn. A small convolutional detector with
a YOLOv8-style head (output [1, 4+C, N]: box centre, size in input pixels, then class
scores), trained with PyTorch (Debian's python3-torch, CPU), exported with
torch.onnx.export and given Ultralytics' metadata (names, imgsz, stride, task), so
visionstack reads it with no settings.

It also writes, for images it generates afresh (the evaluation set):
  eval/NNN.png          the images, lossless
  eval/truth.json       their true boxes
  eval/reference.json   PyTorch's own predictions on them, with the pre-processing
                        the model was trained with: what visionstack must reproduce

  /usr/bin/python3 projects/defects/train.py [--epochs N] [--out DIR]
"""
import argparse
import hashlib
import json
import math
import os
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image

LABELS = ["scratch", "spot"]
SIZE = 128          # the model's input, square
STRIDE = 8          # one cell of the head per 8×8 input pixels
W, H = 192, 144     # the generated photos: letterboxed into SIZE×SIZE
PAD = 114           # letterbox fill, as Ultralytics


def texture(rng):
    """A surface: a smooth gradient, faint stripes and grain."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    base = rng.uniform(90, 170, size=3)
    grad = rng.uniform(-0.25, 0.25, size=(2, 3))
    img = base + x[..., None] * grad[0] + y[..., None] * grad[1]
    a, f = rng.uniform(0, math.pi), rng.uniform(0.05, 0.3)
    img += rng.uniform(0, 8) * np.sin((x * math.cos(a) + y * math.sin(a)) * f)[..., None]
    img += rng.normal(0, rng.uniform(2, 7), size=(H, W, 1))
    return img


def draw(rng, img):
    """Draws 0-3 defects; returns their boxes as (x0, y0, x1, y1, class) in pixels."""
    boxes = []
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    for _ in range(rng.integers(0, 4)):
        c = int(rng.integers(0, 2))
        if c == 0:  # a scratch: a thin dark stroke
            length, angle = rng.uniform(25, 60), rng.uniform(0, math.pi)
            cx, cy = rng.uniform(30, W - 30), rng.uniform(30, H - 30)
            dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
            x0, y0, x1, y1 = cx - dx, cy - dy, cx + dx, cy + dy
            t = np.clip(((x - x0) * (x1 - x0) + (y - y0) * (y1 - y0)) / (length ** 2), 0, 1)
            d = np.hypot(x - (x0 + t * (x1 - x0)), y - (y0 + t * (y1 - y0)))
            width = rng.uniform(1.2, 2.5)
            mask = np.clip(width - d, 0, 1)
            img -= mask[..., None] * rng.uniform(50, 90)
            half = width
            box = (min(x0, x1) - half, min(y0, y1) - half, max(x0, x1) + half, max(y0, y1) + half)
        else:  # a spot: a soft disc, darker or brighter
            r = rng.uniform(5, 12)
            cx, cy = rng.uniform(r + 4, W - r - 4), rng.uniform(r + 4, H - r - 4)
            mask = np.clip(r - np.hypot(x - cx, y - cy), 0, 1)
            img += mask[..., None] * rng.choice([-1, 1]) * rng.uniform(50, 80)
            box = (cx - r, cy - r, cx + r, cy + r)
        boxes.append((max(0, box[0]), max(0, box[1]), min(W, box[2]), min(H, box[3]), c))
    return boxes


def sample(rng):
    img = texture(rng)
    boxes = draw(rng, img)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), boxes


def letterbox(rgb):
    """The pre-processing the model is trained with, and visionstack's letterbox:
    fit inside SIZE×SIZE keeping the aspect (bilinear, align_corners=False), centred,
    the rest PAD; pixel values over 255. Returns the input and (scale, pad_x, pad_y)."""
    h, w = rgb.shape[:2]
    s = min(SIZE / w, SIZE / h)
    rw, rh = int(w * s + 0.5), int(h * s + 0.5)
    t = torch.from_numpy(rgb).permute(2, 0, 1).float()[None]
    if (rw, rh) != (w, h):
        t = F.interpolate(t, size=(rh, rw), mode="bilinear", align_corners=False)
    px, py = (SIZE - rw) // 2, (SIZE - rh) // 2
    out = torch.full((1, 3, SIZE, SIZE), float(PAD))
    out[:, :, py:py + rh, px:px + rw] = t
    return out / 255.0, (rw / w, rh / h, px, py)


class Net(nn.Module):
    """Four strided convolutions to a 16×16 grid, a 1×1 head of 4 + C values a cell."""

    def __init__(self, classes=len(LABELS)):
        super().__init__()

        def conv(i, o, s):
            return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))
        self.features = nn.Sequential(conv(3, 16, 2), conv(16, 32, 2), conv(32, 32, 1), conv(32, 64, 2), conv(64, 64, 1), conv(64, 64, 1))
        self.head = nn.Conv2d(64, 4 + classes, 1)
        n = SIZE // STRIDE
        gy, gx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        self.register_buffer("gx", gx.float().flatten())
        self.register_buffer("gy", gy.float().flatten())

    def raw(self, x):
        return self.head(self.features(x)).flatten(2)  # [B, 4+C, N]

    def forward(self, x):
        """Ultralytics v8's output: [B, 4+C, N], box centre and size in input pixels,
        class scores after a sigmoid."""
        r = self.raw(x)
        cx = (self.gx + torch.sigmoid(r[:, 0])) * STRIDE
        cy = (self.gy + torch.sigmoid(r[:, 1])) * STRIDE
        w = torch.exp(r[:, 2].clamp(-6, 6)) * 16
        h = torch.exp(r[:, 3].clamp(-6, 6)) * 16
        return torch.cat([torch.stack([cx, cy, w, h], 1), torch.sigmoid(r[:, 4:])], 1)


def targets(batch_boxes, frames, classes):
    """Each true box belongs to the cell its centre falls in."""
    n = (SIZE // STRIDE) ** 2
    cls = torch.zeros(len(batch_boxes), classes, n)
    box = torch.zeros(len(batch_boxes), 4, n)
    mask = torch.zeros(len(batch_boxes), n, dtype=torch.bool)
    for b, (boxes, (sx, sy, px, py)) in enumerate(zip(batch_boxes, frames)):
        for x0, y0, x1, y1, c in boxes:
            x0, x1 = x0 * sx + px, x1 * sx + px
            y0, y1 = y0 * sy + py, y1 * sy + py
            cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
            gx, gy = int(cx // STRIDE), int(cy // STRIDE)
            i = gy * (SIZE // STRIDE) + gx
            cls[b, c, i] = 1
            box[b, :, i] = torch.tensor([cx / STRIDE - gx, cy / STRIDE - gy, math.log(w / 16), math.log(h / 16)])
            mask[b, i] = True
    return cls, box, mask


def train(epochs, rng):
    torch.manual_seed(7)
    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    images, boxes = [], []
    for _ in range(2400):
        img, bx = sample(rng)
        inp, frame = letterbox(img)
        images.append(inp[0])
        boxes.append((bx, frame))
    x_all = torch.stack(images)
    steps = epochs * (len(images) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    net.train()
    start = time.time()
    for epoch in range(epochs):
        order = torch.randperm(len(images))
        total = 0.0
        for k in range(0, len(images) - 31, 32):
            idx = order[k:k + 32]
            cls_t, box_t, mask = targets([boxes[i][0] for i in idx], [boxes[i][1] for i in idx], len(LABELS))
            r = net.raw(x_all[idx])
            loss = F.binary_cross_entropy_with_logits(r[:, 4:], cls_t, reduction="sum") / max(1, mask.sum().item())
            if mask.any():
                pred = torch.stack([torch.sigmoid(r[:, 0]), torch.sigmoid(r[:, 1]), r[:, 2], r[:, 3]], 1)
                loss = loss + 5 * F.smooth_l1_loss(pred.permute(0, 2, 1)[mask], box_t.permute(0, 2, 1)[mask])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        print(f"epoch {epoch + 1}/{epochs}: loss {total / (len(images) // 32):.3f} ({time.time() - start:.0f} s)", flush=True)
    net.eval()
    return net


def predict(net, rgb, conf, iou=0.45):
    """PyTorch's own predictions, as visionstack's decoder makes them: the best class
    a cell, above conf, class-aware NMS, the letterbox undone, normalised
    [xMin, xMax, yMin, yMax]."""
    inp, (sx, sy, px, py) = letterbox(rgb)
    with torch.no_grad():
        out = net(inp)[0]  # [4+C, N]
    h, w = rgb.shape[:2]
    scores, classes = out[4:].max(0)
    keep = scores >= conf
    cx, cy, bw, bh = out[0][keep], out[1][keep], out[2][keep], out[3][keep]
    b = torch.stack([((cx - bw / 2) - px) / sx, ((cy - bh / 2) - py) / sy, ((cx + bw / 2) - px) / sx, ((cy + bh / 2) - py) / sy], 1).double()
    b[:, 0::2] = b[:, 0::2].clamp(0, w)
    b[:, 1::2] = b[:, 1::2].clamp(0, h)
    s, c = scores[keep].double(), classes[keep]
    order = torchvision.ops.batched_nms(b, s, c, iou)
    return [{"label": LABELS[int(c[i])], "score": float(s[i]),
             "box": [float(b[i, 0]) / w, float(b[i, 2]) / w, float(b[i, 1]) / h, float(b[i, 3]) / h]} for i in order]


def export(net, path):
    dummy = torch.zeros(1, 3, SIZE, SIZE)
    torch.onnx.export(net, dummy, path, input_names=["images"], output_names=["output0"], opset_version=13)
    m = onnx.load(path)
    for k, v in {"names": "{" + ", ".join(f"{i}: '{n}'" for i, n in enumerate(LABELS)) + "}",
                 "imgsz": f"[{SIZE}, {SIZE}]", "stride": str(STRIDE), "task": "detect",
                 "description": "visionstack defects example: scratches and spots on generated textures"}.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--eval-images", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rng = np.random.default_rng(20261204)
    start = time.time()
    net = train(args.epochs, rng)
    os.makedirs(os.path.join(args.out, "model"), exist_ok=True)
    path = os.path.join(args.out, "model", "defects.onnx")
    export(net, path)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    ev = os.path.join(args.out, "eval")
    os.makedirs(ev, exist_ok=True)
    truth, reference = {}, {"model_sha256": digest, "confidence": 0.25, "predictions": {}}
    erng = np.random.default_rng(4)  # fresh images: not the training ones
    for i in range(args.eval_images):
        img, boxes = sample(erng)
        name = f"{i:03d}.png"
        Image.fromarray(img).save(os.path.join(ev, name))
        truth[name] = [{"label": LABELS[c], "box": [x0 / W, x1 / W, y0 / H, y1 / H]} for x0, y0, x1, y1, c in boxes]
        reference["predictions"][name] = predict(net, img, reference["confidence"])
    json.dump(truth, open(os.path.join(ev, "truth.json"), "w"), indent=1)
    json.dump(reference, open(os.path.join(ev, "reference.json"), "w"), indent=1)
    print(f"trained and exported {path} (sha256 {digest[:12]}) in {time.time() - start:.0f} s; {args.eval_images} evaluation images in {ev}")


if __name__ == "__main__":
    main()
