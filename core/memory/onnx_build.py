"""all-MiniLM-L6-v2's transformer as an ONNX graph, built from the packaged weights.

No PyTorch: the weights are read from ``model.safetensors`` with ``safetensors.numpy``
and the graph is written node by node with ``onnx.helper``. It is BERT as the model's
``config.json`` describes it (6 layers, 12 heads, hidden 384, exact GELU, post-norm),
and its output is the last hidden state, which :class:`core.memory.onnx_model.OnnxEncoder`
pools and normalizes as sentence-transformers does. The result is checked against
reference vectors made by PyTorch once (``minilm_reference.json``) before it is used.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

OPSET = 17  # LayerNormalization
MASKED = -1e9  # added to the scores of padding tokens: exp() of it is 0 in float32


class _Graph:
    """Nodes and initializers under construction, with unique names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, name: str, value: npt.ArrayLike, dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, kind: str, *inputs: str, **attrs: Any) -> str:
        from onnx import helper

        self._count += 1
        out = f"{kind.lower()}_{self._count}"
        self.nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def linear(self, x: str, weights: dict[str, npt.NDArray[Any]], prefix: str) -> str:
        # torch's Linear stores (out, in); MatMul wants (in, out).
        w = self.const(f"{prefix}.weight_t", weights[f"{prefix}.weight"].T)
        b = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("Add", self.op("MatMul", x, w), b)

    def layer_norm(
        self, x: str, weights: dict[str, npt.NDArray[Any]], prefix: str, eps: float
    ) -> str:
        gamma = self.const(f"{prefix}.weight", weights[f"{prefix}.weight"])
        beta = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("LayerNormalization", x, gamma, beta, axis=-1, epsilon=eps)


def _encoder_layer(
    g: _Graph, h: str, mask: str, weights: dict[str, npt.NDArray[Any]], i: int, cfg: dict[str, Any]
) -> str:
    heads = int(cfg["num_attention_heads"])
    size = int(cfg["hidden_size"]) // heads
    eps = float(cfg["layer_norm_eps"])
    p = f"encoder.layer.{i}"
    split = g.const(f"{p}.split_shape", [0, 0, heads, size], np.int64)
    merge = g.const(f"{p}.merge_shape", [0, 0, heads * size], np.int64)

    def heads_of(name: str, perm: list[int]) -> str:
        projected = g.linear(h, weights, f"{p}.attention.self.{name}")
        return g.op("Transpose", g.op("Reshape", projected, split), perm=perm)

    q = heads_of("query", [0, 2, 1, 3])  # (batch, heads, tokens, size)
    k = heads_of("key", [0, 2, 3, 1])  # (batch, heads, size, tokens)
    v = heads_of("value", [0, 2, 1, 3])
    scale = g.const(f"{p}.scale", 1.0 / math.sqrt(size))
    scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k), scale), mask)
    context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
    context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge)
    attended = g.linear(context, weights, f"{p}.attention.output.dense")
    h1 = g.layer_norm(g.op("Add", attended, h), weights, f"{p}.attention.output.LayerNorm", eps)

    inner = g.linear(h1, weights, f"{p}.intermediate.dense")
    # Exact GELU (hidden_act "gelu"): 0.5 * x * (1 + erf(x / sqrt(2))).
    root2 = g.const(f"{p}.sqrt2", math.sqrt(2.0))
    half, one = g.const(f"{p}.half", 0.5), g.const(f"{p}.one", 1.0)
    erf = g.op("Erf", g.op("Div", inner, root2))
    gelu = g.op("Mul", g.op("Mul", inner, half), g.op("Add", erf, one))
    out = g.linear(gelu, weights, f"{p}.output.dense")
    return g.layer_norm(g.op("Add", out, h1), weights, f"{p}.output.LayerNorm", eps)


def build_graph(model_dir: Path, dest: Path) -> None:
    """Write the transformer of the model in ``model_dir`` to ``dest`` as ONNX.

    Inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64, batch x tokens);
    output ``last_hidden_state`` (float32, batch x tokens x hidden).
    """
    import onnx
    from onnx import TensorProto, helper
    from safetensors.numpy import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu":
        raise ValueError(f"not a BERT model with exact GELU: {model_dir / 'config.json'}")
    weights = load_file(str(model_dir / "model.safetensors"))
    g = _Graph()
    ids, mask_in, types = "input_ids", "attention_mask", "token_type_ids"

    # Embeddings: word + position (0..tokens-1) + token type, then LayerNorm.
    tokens = g.op("Gather", g.op("Shape", ids), g.const("one_index", 1, np.int64), axis=0)
    positions = g.op("Range", g.const("zero", 0, np.int64), tokens, g.const("step", 1, np.int64))
    word = g.op("Gather", g.const("word", weights["embeddings.word_embeddings.weight"]), ids)
    pos = g.op(
        "Gather", g.const("pos", weights["embeddings.position_embeddings.weight"]), positions
    )
    kind = g.op(
        "Gather", g.const("type", weights["embeddings.token_type_embeddings.weight"]), types
    )
    h = g.op("Add", g.op("Add", word, kind), pos)
    h = g.layer_norm(h, weights, "embeddings.LayerNorm", float(cfg["layer_norm_eps"]))

    # Padding tokens get MASKED added to their scores: (1 - mask) * MASKED, (batch, 1, 1, tokens).
    keep = g.op("Cast", mask_in, to=TensorProto.FLOAT)
    dropped = g.op("Sub", g.const("mask_one", 1.0), keep)
    additive = g.op("Mul", dropped, g.const("masked", MASKED))
    mask = g.op("Unsqueeze", additive, g.const("mask_axes", [1, 2], np.int64))

    for i in range(int(cfg["num_hidden_layers"])):
        h = _encoder_layer(g, h, mask, weights, i, cfg)
    g.nodes.append(helper.make_node("Identity", [h], ["last_hidden_state"]))

    def int_input(name: str) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "tokens"])

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [int_input(ids), int_input(mask_in), int_input(types)],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", cfg["hidden_size"]]
            )
        ],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="agentry"
    )
    model.ir_version = 8  # what ONNX Runtime 1.18 and later load
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))
