#!/usr/bin/env python3
"""Build the committed ONNX models and record ONNX Runtime's own outputs for their inputs.

Every model under models/onnx/<name>/ is made here, with fixed seeds, next to:
  model.onnx   the model
  input.npy    rows to score, 2-D float32 C-order ([rows, features]; CNN rows are flattened)
  expected.csv ONNX Runtime's output for each row (its first float output), comma-separated
  meta.json    what the model is, its opset, and the library versions

Models:
  mlp_std_relu_sigmoid  Sub/Div standardization, Gemm (transB=1, as PyTorch exports), Relu, Sigmoid
  mlp_matmul_softmax    MatMul+Add, Tanh, Gemm with alpha/beta, LeakyRelu, Softmax
  mlp_gelu              Gelu (exact and tanh forms, opset 20), Flatten, Identity, Dropout
  mlp_32_256_256_1      the benchmark net: 32-256-256-1, Relu, Relu, Sigmoid
  lgb_trees             a LightGBM classifier converted by onnxmltools (ai.onnx.ml trees)
  cnn_small             Conv, Relu, MaxPool, Gemm, Softmax on 1x8x8 images (ONNX Runtime only)

Run:  python3 -m pip install -r models/requirements.txt && python3 models/generate_onnx.py
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "onnx")
F32 = np.float32


def dense_inputs(rng, n_rows, n_features):
    """Normal rows plus edge rows: zeros, large magnitudes, tiny values, a one-hot per feature."""
    X = rng.normal(0.0, 1.5, size=(n_rows, n_features)).astype(F32)
    edge = [np.zeros(n_features, F32), np.full(n_features, 40.0, F32),
            np.full(n_features, -40.0, F32), np.full(n_features, 1e-30, F32)]
    edge += [np.eye(n_features, dtype=F32)[i] * 3 for i in range(n_features)]
    return np.vstack([X, np.array(edge, F32)])


def gemm_layer(rng, name, x, n_in, n_out, init, nodes, trans_b=True, alpha=None, beta=None):
    w = (rng.normal(0, np.sqrt(2.0 / n_in), size=(n_out, n_in) if trans_b else (n_in, n_out))).astype(F32)
    b = rng.normal(0, 0.1, size=n_out).astype(F32)
    init += [numpy_helper.from_array(w, f"{name}.W"), numpy_helper.from_array(b, f"{name}.b")]
    attrs = {"transB": 1} if trans_b else {}
    if alpha is not None:
        attrs.update(alpha=alpha, beta=beta)
    nodes.append(helper.make_node("Gemm", [x, f"{name}.W", f"{name}.b"], [f"{name}.y"], name=name, **attrs))
    return f"{name}.y"


def act(op, x, nodes, **attrs):
    y = f"{x}.{op.lower()}"
    nodes.append(helper.make_node(op, [x], [y], name=y, **attrs))
    return y


def save(name, graph, opset, X, description, extra=None):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opset],
                              producer_name="streamscore models/generate_onnx.py")
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    write(name, model.SerializeToString(), X, description, opset, extra)


def write(name, model_bytes, X, description, opset, extra=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(model_bytes)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [X.shape[0]] + [d for d in inp.shape[1:]]
    outs = sess.run(None, {inp.name: X.reshape(shape)})
    out_meta = sess.get_outputs()
    idx = next(i for i, o in enumerate(out_meta) if o.type == "tensor(float)")
    Y = np.asarray(outs[idx], dtype=F32).reshape(X.shape[0], -1)
    np.save(os.path.join(d, "input.npy"), np.ascontiguousarray(X.reshape(X.shape[0], -1), F32))
    with open(os.path.join(d, "expected.csv"), "w") as f:
        for row in Y:
            f.write(",".join(repr(float(v)) for v in row) + "\n")
    meta = {"description": description, "opset": dict(opset), "rows": int(X.shape[0]),
            "output": out_meta[idx].name, "output_width": int(Y.shape[1]),
            "onnx": onnx.__version__, "onnxruntime": ort.__version__}
    meta.update(extra or {})
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    print(f"{name}: {X.shape[0]} rows, output `{meta['output']}` x {Y.shape[1]}")


def mlp_std_relu_sigmoid(rng):
    n = 8
    init, nodes = [], []
    mean = rng.normal(0, 2, size=n).astype(F32)
    std = rng.uniform(0.5, 3, size=n).astype(F32)
    init += [numpy_helper.from_array(mean, "mean"), numpy_helper.from_array(std, "std")]
    nodes += [helper.make_node("Sub", ["x", "mean"], ["centered"]),
              helper.make_node("Div", ["centered", "std"], ["scaled"])]
    h = act("Relu", gemm_layer(rng, "l1", "scaled", n, 16, init, nodes), nodes)
    h = act("Relu", gemm_layer(rng, "l2", h, 16, 8, init, nodes), nodes)
    y = act("Sigmoid", gemm_layer(rng, "l3", h, 8, 1, init, nodes), nodes)
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", 1])], init)
    save("mlp_std_relu_sigmoid", graph, [("", 17)], dense_inputs(rng, 300, n) * 2 + mean,
         "standardization, Gemm transB=1, Relu, Sigmoid")


def mlp_matmul_softmax(rng):
    n = 6
    init, nodes = [], []
    w = rng.normal(0, 0.6, size=(n, 12)).astype(F32)
    b = rng.normal(0, 0.1, size=12).astype(F32)
    init += [numpy_helper.from_array(w, "mm.W"), numpy_helper.from_array(b, "mm.b")]
    nodes += [helper.make_node("MatMul", ["x", "mm.W"], ["mm.xw"]),
              helper.make_node("Add", ["mm.xw", "mm.b"], ["mm.y"])]
    h = act("Tanh", "mm.y", nodes)
    h = gemm_layer(rng, "l2", h, 12, 10, init, nodes, trans_b=False, alpha=0.5, beta=2.0)
    h = act("LeakyRelu", h, nodes, alpha=0.2)
    y = act("Softmax", gemm_layer(rng, "l3", h, 10, 4, init, nodes), nodes, axis=-1)
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", 4])], init)
    save("mlp_matmul_softmax", graph, [("", 17)], dense_inputs(rng, 300, n),
         "MatMul+Add, Tanh, Gemm alpha/beta, LeakyRelu, Softmax")


def mlp_gelu(rng):
    n = 10
    init, nodes = [], []
    x = act("Flatten", "x", nodes, axis=1)
    x = act("Identity", x, nodes)
    h = act("Gelu", gemm_layer(rng, "l1", x, n, 24, init, nodes), nodes)
    h = act("Dropout", h, nodes)
    h = act("Gelu", gemm_layer(rng, "l2", h, 24, 24, init, nodes), nodes, approximate="tanh")
    y = gemm_layer(rng, "l3", h, 24, 3, init, nodes)
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", 3])], init)
    save("mlp_gelu", graph, [("", 20)], dense_inputs(rng, 300, n), "Gelu (exact, tanh), Flatten, Identity, Dropout, linear output")


def mlp_32_256_256_1(rng):
    init, nodes = [], []
    h = act("Relu", gemm_layer(rng, "l1", "x", 32, 256, init, nodes), nodes)
    h = act("Relu", gemm_layer(rng, "l2", h, 256, 256, init, nodes), nodes)
    y = act("Sigmoid", gemm_layer(rng, "l3", h, 256, 1, init, nodes), nodes)
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", 1])], init)
    save("mlp_32_256_256_1", graph, [("", 17)], dense_inputs(rng, 1000, 32), "benchmark MLP 32-256-256-1")


def lgb_trees(rng):
    import lightgbm as lgb
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType
    X = rng.normal(size=(2000, 8)).astype(F32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] - np.abs(X[:, 3]) + rng.normal(0, 0.3, 2000) > 0).astype(int)
    clf = lgb.LGBMClassifier(n_estimators=40, num_leaves=15, random_state=7, n_jobs=1, verbose=-1)
    clf.fit(X, y)
    onx = onnxmltools.convert_lightgbm(clf, initial_types=[("x", FloatTensorType([None, 8]))],
                                       target_opset=15, zipmap=False)
    write("lgb_trees", onx.SerializeToString(), dense_inputs(rng, 300, 8),
          "LightGBM binary classifier (40 trees) converted by onnxmltools: ai.onnx.ml TreeEnsembleClassifier",
          {"": 15}, {"lightgbm": lgb.__version__, "onnxmltools": onnxmltools.__version__})


def cnn_small(rng):
    init = [numpy_helper.from_array(rng.normal(0, 0.5, size=(4, 1, 3, 3)).astype(F32), "conv.W"),
            numpy_helper.from_array(rng.normal(0, 0.1, size=4).astype(F32), "conv.b"),
            numpy_helper.from_array(rng.normal(0, 0.3, size=(3, 64)).astype(F32), "fc.W"),
            numpy_helper.from_array(rng.normal(0, 0.1, size=3).astype(F32), "fc.b")]
    nodes = [helper.make_node("Conv", ["x", "conv.W", "conv.b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "fc.W", "fc.b"], ["g"], transB=1),
             helper.make_node("Softmax", ["g"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], init)
    X = rng.normal(size=(100, 1, 8, 8)).astype(F32)
    save("cnn_small", graph, [("", 17)], X, "Conv, Relu, MaxPool, Gemm, Softmax on 1x8x8 images")


def main():
    for i, build in enumerate([mlp_std_relu_sigmoid, mlp_matmul_softmax, mlp_gelu, mlp_32_256_256_1,
                               lgb_trees, cnn_small]):
        build(np.random.default_rng(1000 + i))


if __name__ == "__main__":
    main()
