#!/usr/bin/env python3
"""The frame-scoring test assets (models/frames/), reproducibly (seeded):

- model.onnx: a small CNN with fixed weights built with the `onnx` package: input
  [N, 3, 32, 32] (normalized RGB), Conv 3->8 (3x3) + Relu + MaxPool 2, Conv 8->16 (3x3) + Relu,
  GlobalAveragePool, Gemm 16->4, Softmax: 4 class scores;
- frames/*.raw and frames.json: 3 cameras x 4 steps of generated frames (a bright square
  moving over noise; camera 0 is static): RGB8 64x48, BGR8 80x60 and GRAY8 40x30;
- tensor.npy: the frames preprocessed the way src/frames does it (bilinear resize with
  half-pixel centres and clamped edges, /255, ImageNet mean/std, NCHW), one row per frame;
- expected.csv: ONNX Runtime's outputs for that tensor.

  python3 models/generate_frames.py   # numpy, onnx, onnxruntime (models/requirements.txt)
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(ROOT, "frames")
F32 = np.float32
W, H = 32, 32
MEAN = np.array([0.485, 0.456, 0.406], dtype=F32)
STD = np.array([0.229, 0.224, 0.225], dtype=F32)
CAMERAS = [(64, 48, "rgb8"), (80, 60, "bgr8"), (40, 30, "gray8")]


def model(rng):
    init = [
        numpy_helper.from_array(rng.normal(0, 0.4, size=(8, 3, 3, 3)).astype(F32), "c1.W"),
        numpy_helper.from_array(rng.normal(0, 0.1, size=8).astype(F32), "c1.b"),
        numpy_helper.from_array(rng.normal(0, 0.3, size=(16, 8, 3, 3)).astype(F32), "c2.W"),
        numpy_helper.from_array(rng.normal(0, 0.1, size=16).astype(F32), "c2.b"),
        numpy_helper.from_array(rng.normal(0, 0.5, size=(4, 16)).astype(F32), "fc.W"),
        numpy_helper.from_array(rng.normal(0, 0.1, size=4).astype(F32), "fc.b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "c1.W", "c1.b"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("MaxPool", ["b"], ["c"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["c", "c2.W", "c2.b"], ["d"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["d"], ["e"]),
        helper.make_node("GlobalAveragePool", ["e"], ["f"]),
        helper.make_node("Flatten", ["f"], ["g"], axis=1),
        helper.make_node("Gemm", ["g", "fc.W", "fc.b"], ["h"], transB=1),
        helper.make_node("Softmax", ["h"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "frames_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, H, W])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], init)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="streamscore")
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


def frame(rng, w, h, fmt, x, y):
    ch = 1 if fmt == "gray8" else 3
    img = (30 + rng.integers(0, 40, size=(h, w, ch))).astype(np.int32)
    img[y:y + h // 4, x:x + w // 4, :] = 200 + rng.integers(0, 20, size=(h // 4, w // 4, ch))
    return img.clip(0, 255).astype(np.uint8)


def source(o, src, dst):
    s = np.clip((o.astype(F32) + F32(0.5)) * F32(src / dst) - F32(0.5), 0, src - 1).astype(F32)
    i0 = np.floor(s)
    i1 = np.minimum(i0 + 1, src - 1)
    return i0.astype(int), i1.astype(int), (s - i0).astype(F32)


def preprocess(img, fmt):
    h, w = img.shape[:2]
    rgb = img[..., ::-1] if fmt == "bgr8" else (np.repeat(img, 3, axis=2) if fmt == "gray8" else img)
    rgb = rgb.astype(F32)
    x0, x1, fx = source(np.arange(W), w, W)
    y0, y1, fy = source(np.arange(H), h, H)
    out = np.empty((3, H, W), dtype=F32)
    for c in range(3):
        p = rgb[..., c]
        top = p[y0][:, x0] + (p[y0][:, x1] - p[y0][:, x0]) * fx
        bottom = p[y1][:, x0] + (p[y1][:, x1] - p[y1][:, x0]) * fx
        v = top + (bottom - top) * fy[:, None]
        out[c] = (v / F32(255) - MEAN[c]) * (F32(1) / STD[c])
    return out


def main():
    rng = np.random.default_rng(2026)
    os.makedirs(os.path.join(OUT, "frames"), exist_ok=True)
    m = model(rng)
    onnx.save(m, os.path.join(OUT, "model.onnx"))
    index, tensors = [], []
    for step in range(4):
        for cam, (w, h, fmt) in enumerate(CAMERAS):
            moved = 0 if cam == 0 else step * 4
            seed_rng = np.random.default_rng(100 + cam if cam == 0 else 100 + cam * 10 + step)
            img = frame(seed_rng, w, h, fmt, 2 + moved, 1 + moved // 2)
            name = f"cam{cam}_{step}.raw"
            img.tofile(os.path.join(OUT, "frames", name))
            index.append({"camera": cam, "timestamp_ms": step * 40, "width": w, "height": h, "format": fmt, "file": name})
            tensors.append(preprocess(img, fmt))
    with open(os.path.join(OUT, "frames.json"), "w") as f:
        json.dump(index, f, indent=1)
    x = np.stack(tensors)
    np.save(os.path.join(OUT, "tensor.npy"), x.reshape(len(x), -1))
    session = ort.InferenceSession(os.path.join(OUT, "model.onnx"), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": x})[0]
    with open(os.path.join(OUT, "expected.csv"), "w") as f:
        for row in y:
            f.write(",".join(repr(float(v)) for v in row) + "\n")
    print(f"{len(x)} frames, outputs {y.shape}")


if __name__ == "__main__":
    main()
