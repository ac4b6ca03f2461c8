"""A trained ``MLP`` as an ONNX graph (``MLP.to_onnx``, ``fastmlp export``), for onnxruntime and
the other runtimes that read ONNX. Needs the ``onnx`` package: ``pip install "fastmlp[onnx]"``.

The graph takes ``X`` (batch, n_features) in the model's dtype; each layer is a ``Gemm``
(``X @ W + b``) followed by its activation, as in :mod:`fastmlp.reference`. Its outputs:
- classifiers: ``probabilities`` (what ``predict_proba`` returns) and ``label`` (``predict``:
  the class of the largest output, mapped through ``classes_``; for ``output="logistic"`` the
  0/1 matrix of logits above 0);
- regression (``output="identity"``): ``predictions``, (batch,) for a model fitted on 1-D
  targets, else (batch, n_outputs), as ``predict`` returns them.
"""

import numpy as np

from .codes import LEAKY_SLOPE
from .io import write_atomic

OPSET = 17          # ONNX operator set: onnxruntime 1.14 (2023) and later run it
IR_VERSION = 8      # the file format version that goes with opset 17
ACTIVATION_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "leaky_relu": "LeakyRelu",
                  "identity": None}
HEAD_OPS = {"softmax": "Softmax", "sigmoid": "Sigmoid", "logistic": "Sigmoid", "identity": None}


def require_onnx():
    """The ``onnx`` module, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise ImportError('ONNX export needs the onnx package: pip install "fastmlp[onnx]"') from None
    return onnx


def onnx_graph(model):
    """The ONNX ``ModelProto`` of a fitted ``model`` (see the module docstring)."""
    onnx = require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    model._check_fitted()
    elem = TensorProto.FLOAT if np.dtype(model.dtype) == np.float32 else TensorProto.DOUBLE
    nodes, weights = [], []
    if model.activation == "leaky_relu":
        # leaky ReLU as max(z, slope * z), the slope in the model's dtype: LeakyRelu's alpha
        # attribute is a float32, off by 2e-10 for float64 models
        weights.append(numpy_helper.from_array(np.array(LEAKY_SLOPE, np.dtype(model.dtype)), "slope"))
    x = "X"
    n_layers = len(model.params)
    for i, (W, b) in enumerate(model.params):
        weights += [numpy_helper.from_array(np.ascontiguousarray(W), f"W{i}"),
                    numpy_helper.from_array(np.ascontiguousarray(b), f"b{i}")]
        z = f"z{i}"
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"b{i}"], [z], name=f"dense{i}"))
        op = ACTIVATION_OPS[model.activation] if i < n_layers - 1 else HEAD_OPS[model.output]
        if op is None:
            x = z
            continue
        x = f"a{i}"
        if op == "LeakyRelu":
            nodes.append(helper.make_node("Mul", [z, "slope"], [f"s{i}"], name=f"slope{i}"))
            nodes.append(helper.make_node("Max", [z, f"s{i}"], [x], name=f"leaky_relu{i}"))
            continue
        extra = {"axis": 1} if op == "Softmax" else {}
        nodes.append(helper.make_node(op, [z], [x], name=f"{op.lower()}{i}", **extra))

    n_out = model.layers[-1]
    outputs = []
    if not model.is_classifier and getattr(model, "target_ndim_", 2) == 1:   # y was 1-D
        weights.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
        nodes.append(helper.make_node("Squeeze", [x, "axis1"], ["predictions"], name="predictions"))
        outputs.append(helper.make_tensor_value_info("predictions", elem, ["batch"]))
    elif not model.is_classifier:
        nodes.append(helper.make_node("Identity", [x], ["predictions"], name="predictions"))
        outputs.append(helper.make_tensor_value_info("predictions", elem, ["batch", n_out]))
    else:
        nodes.append(helper.make_node("Identity", [x], ["probabilities"], name="probabilities"))
        outputs.append(helper.make_tensor_value_info("probabilities", elem, ["batch", n_out]))
        outputs.append(_label_nodes(model, f"z{n_layers - 1}", x, nodes, weights))
    graph = helper.make_graph(
        nodes, "fastmlp_mlp", [helper.make_tensor_value_info("X", elem, ["batch", model.layers[0]])],
        outputs, initializer=weights)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="fastmlp")
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    return proto


def _label_nodes(model, logits, probabilities, nodes, weights):
    """Append the nodes of ``label`` (what ``predict`` returns); returns its output info."""
    from onnx import TensorProto, helper, numpy_helper

    if model.output == "logistic":       # 1 where the logit is above 0
        weights.append(numpy_helper.from_array(np.zeros((), np.dtype(model.dtype)), "zero"))
        nodes.append(helper.make_node("Greater", [logits, "zero"], ["above"], name="above"))
        nodes.append(helper.make_node("Cast", ["above"], ["label"], to=TensorProto.INT64, name="label"))
        return helper.make_tensor_value_info("label", TensorProto.INT64, ["batch", model.layers[-1]])
    index = "label" if model.classes_ is None else "class_index"
    nodes.append(helper.make_node("ArgMax", [probabilities], [index], axis=1, keepdims=0,
                                  name="argmax"))
    if model.classes_ is None:
        return helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])
    classes = np.asarray(model.classes_)
    if classes.dtype.kind in "US":
        kind = TensorProto.STRING
        table = helper.make_tensor("classes", TensorProto.STRING, [len(classes)],
                                   [str(c).encode() for c in classes])
    elif classes.dtype.kind in "iub":
        kind, table = TensorProto.INT64, numpy_helper.from_array(classes.astype(np.int64), "classes")
    else:
        raise ValueError(f"classes_ of dtype {classes.dtype} cannot be written to ONNX; use "
                         f"integer or string labels.")
    weights.append(table)
    nodes.append(helper.make_node("Gather", ["classes", index], ["label"], axis=0, name="label"))
    return helper.make_tensor_value_info("label", kind, ["batch"])


def to_onnx(model, path):
    """Write ``model`` as an ONNX file at ``path`` (atomically); returns the path."""
    proto = onnx_graph(model)
    data = proto.SerializeToString()
    write_atomic(path, lambda file: file.write(data))
    return path
