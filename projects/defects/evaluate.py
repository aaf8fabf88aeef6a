#!/usr/bin/python3
"""Scores a `visionstack run` of the defects example against the images' true boxes,
and against PyTorch's own predictions (eval/reference.json).

  /usr/bin/python3 projects/defects/evaluate.py out/defects/visionstack.db
"""
import json
import os
import sqlite3
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def iou(a, b):
    ix = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[2], b[2]))
    inter = ix * iy
    union = (a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - inter
    return inter / union if union > 0 else 0.0


def main():
    db = sqlite3.connect(sys.argv[1] if len(sys.argv) > 1 else "out/defects/visionstack.db")
    truth = json.load(open(os.path.join(HERE, "eval", "truth.json")))
    ref = json.load(open(os.path.join(HERE, "eval", "reference.json")))
    tp = fp = fn = 0
    same = worst_iou = 0
    worst_iou, worst_score, compared, threshold = 1.0, 0.0, 0, None
    for (doc,) in db.execute("SELECT doc FROM jobs WHERE state = 'done'"):
        job = json.loads(doc)
        name = os.path.basename(job["source"]["object"])
        if name not in truth:
            continue
        res = next(r for r in job["results"] if r["analysis"] == "defects")
        got = [(d["label"], d["confidence"], [d["box"]["xMin"], d["box"]["xMax"], d["box"]["yMin"], d["box"]["yMax"]]) for d in res.get("detections") or []]
        threshold = min([g[1] for g in got] + [threshold or 1.0])
        unmatched = list(truth[name])
        for label, _, box in got:
            best = max(unmatched, key=lambda t: iou(t["box"], box) if t["label"] == label else -1, default=None)
            if best is not None and best["label"] == label and iou(best["box"], box) >= 0.5:
                tp += 1
                unmatched.remove(best)
            else:
                fp += 1
        fn += len(unmatched)
        # Against PyTorch: every prediction it makes above the project's threshold.
        for p in [p for p in ref["predictions"][name] if p["score"] >= 0.5]:
            m = max(got, key=lambda g: iou(g[2], p["box"]) if g[0] == p["label"] else -1, default=None)
            compared += 1
            if m and m[0] == p["label"]:
                worst_iou = min(worst_iou, iou(m[2], p["box"]))
                worst_score = max(worst_score, abs(m[1] - p["score"]))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    print(f"defects: {tp} found, {fp} false alarms, {fn} missed over {len(truth)} images: precision {precision:.2f}, recall {recall:.2f} (IoU ≥ 0.5)")
    print(f"against PyTorch's own predictions: {compared} compared, worst box IoU {worst_iou:.4f}, worst score difference {worst_score:.2g}")


if __name__ == "__main__":
    main()
