"""An ONNX face model as a trainable torch module, rebuilt from JSON + a state dict (no pickle).

:func:`convert_onnx` turns an ONNX graph (NCHW image input, one embedding output) into

- a *graph description*: plain JSON (ops, value names, attributes, tensor shapes) that goes into
  ``model.json`` as the ``graph`` option of the registered backbone ``onnx_graph``, and
- a *state dict*: every weight of the graph as a tensor (``model.pt``).

:class:`OnnxGraph` (``create_backbone("onnx_graph", embedding_size=D, graph=...)``) runs the
nodes in order. Nodes that carry weights are torch modules, so the network fine-tunes like a
hand-written one: ``Conv`` is an ``nn.Conv2d``, ``BatchNormalization`` a BatchNorm (batch
statistics in training mode, running statistics updated), ``PRelu`` a learnt slope, ``Gemm`` and
``MatMul`` with a constant matrix a learnt matrix (and bias). Other constants (an input ``Sub`` /
``Mul``, a ``Reshape`` shape) are buffers: saved, moved with the module, not trained.

Supported ops: see :data:`SUPPORTED`. Any other op, an op from another domain, or an attribute
this converter does not implement is a ValueError naming the op and the node; nothing is run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.onnx.operators import reshape_from_tensor_shape, shape_as_tensor

from marginface.backbones.registry import register_backbone

#: ONNX ops the converter implements (default domain)
SUPPORTED = (
    "Add AveragePool BatchNormalization Cast Clip Concat Constant ConstantOfShape Conv Div Dropout "
    "Flatten Gather Gemm GlobalAveragePool Identity LeakyRelu MatMul MaxPool Mul Pad PRelu "
    "ReduceMean Relu Reshape Shape Sigmoid Slice Squeeze Sub Tanh Transpose Unsqueeze"
).split()

#: ops whose inputs at these positions are weights learnt by fine-tuning (module parameters)
WEIGHT_INPUTS = {
    "Conv": (1, 2),
    "BatchNormalization": (1, 2, 3, 4),
    "PRelu": (1,),
    "Gemm": (1, 2),
    "MatMul": (1,),
}

#: largest tensor a ConstantOfShape node may make (far beyond a face model's; a bigger one is a
#: damaged or hostile file, not a tensor to allocate)
MAX_ELEMENTS = 1 << 28

#: ONNX TensorProto data types -> torch dtypes (those a face model's graph uses)
DTYPES = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
}
DTYPE_NAMES = {v: str(v).removeprefix("torch.") for v in DTYPES.values()}
NAME_DTYPES = {v: k for k, v in DTYPE_NAMES.items()}


class _AnyBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over channel dim 1 of any input of rank >= 2 (ONNX's BatchNormalization)."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"BatchNormalization expects rank >= 2, got {tuple(input.shape)}")


class _Slope(nn.Module):
    """PReLU with a slope of any broadcastable shape (ONNX's ``PRelu``)."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(shape))

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, x, x * self.weight)


class _Gemm(nn.Module):
    """alpha * A' @ B' + beta * C with B (and C) learnt (ONNX's ``Gemm``; ``MatMul`` is the
    special case without C and transposes)."""

    def __init__(self, shapes: Mapping[str, list[int]], attrs: Mapping[str, Any]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(shapes["B"]))
        self.bias = nn.Parameter(torch.zeros(shapes["C"])) if "C" in shapes else None
        self.alpha = float(attrs.get("alpha", 1.0))
        self.beta = float(attrs.get("beta", 1.0))
        self.trans_a = bool(attrs.get("transA", 0))
        self.trans_b = bool(attrs.get("transB", 0))
        self.matmul = bool(attrs.get("matmul", False))

    def forward(self, a: Tensor) -> Tensor:
        if self.matmul:
            return torch.matmul(a, self.weight)
        a = a.t() if self.trans_a else a
        b = self.weight.t() if self.trans_b else self.weight
        if self.bias is None:
            return self.alpha * (a @ b) if self.alpha != 1.0 else a @ b
        if self.alpha == 1.0 and self.beta == 1.0 and self.bias.dim() <= 1:
            return torch.addmm(self.bias.expand(a.shape[0], b.shape[1]), a, b)
        return self.alpha * (a @ b) + self.beta * self.bias


def _pairs(pads: list[int], rank: int) -> tuple[list[int], bool]:
    """ONNX pads (all begins, then all ends) -> (begins, symmetric?)."""
    begins, ends = pads[:rank], pads[rank:]
    return begins, begins == ends


def _torch_pad(pads: list[int]) -> list[int]:
    """ONNX pads over every dim (begins then ends) -> F.pad's order (last dim first)."""
    rank = len(pads) // 2
    out: list[int] = []
    for d in reversed(range(rank)):
        out += [pads[d], pads[d + rank]]
    while len(out) > 2 and out[-2:] == [0, 0]:  # F.pad wants only the padded trailing dims
        out = out[:-2]
    return out


def _conv_module(node: Mapping[str, Any]) -> nn.Module:
    attrs, shapes = node["attrs"], node["shapes"]
    weight = shapes["W"]
    if len(weight) != 4:
        raise ValueError(f"Conv node {node['name']!r}: only 2-D convolutions are supported")
    groups = int(attrs.get("group", 1))
    begins, _ = _pairs(attrs.get("pads", [0, 0, 0, 0]), 2)
    return nn.Conv2d(
        weight[1] * groups,
        weight[0],
        tuple(weight[2:]),
        stride=tuple(attrs.get("strides", [1, 1])),
        padding=tuple(begins),
        dilation=tuple(attrs.get("dilations", [1, 1])),
        groups=groups,
        bias="B" in shapes,
    )


def _module_for(node: Mapping[str, Any]) -> nn.Module:
    op, attrs, shapes = node["op"], node["attrs"], node["shapes"]
    if op == "Conv":
        return _conv_module(node)
    if op == "BatchNormalization":
        eps = float(attrs.get("epsilon", 1e-5))
        momentum = 1.0 - float(attrs.get("momentum", 0.9))
        return _AnyBatchNorm(shapes["scale"][0], eps=eps, momentum=momentum)
    if op == "PRelu":
        return _Slope(shapes["slope"])
    if op == "Gemm":
        return _Gemm(shapes, attrs)
    if op == "MatMul":
        return _Gemm(shapes, {"matmul": True})
    raise AssertionError(op)


#: state-dict names of each weight-carrying op's weight inputs, by input position
PARAM_NAMES = {
    "Conv": {1: ("W", "weight"), 2: ("B", "bias")},
    "BatchNormalization": {
        1: ("scale", "weight"),
        2: ("B", "bias"),
        3: ("mean", "running_mean"),
        4: ("var", "running_var"),
    },
    "PRelu": {1: ("slope", "weight")},
    "Gemm": {1: ("B", "weight"), 2: ("C", "bias")},
    "MatMul": {1: ("B", "weight")},
}


def _ints(x: Tensor) -> list[int]:
    return [int(v) for v in x.reshape(-1).tolist()]


class OnnxGraph(nn.Module):
    """The network of an ONNX graph description (:func:`convert_onnx`).

    Args:
        embedding_size: width D of the output (checked against the graph's description).
        graph: the description: ``input``, ``output``, ``nodes`` (op, name, inputs, outputs,
            attrs, shapes), ``consts`` (value name -> buffer name, shape, dtype).
        input_size: side S of the square inputs the graph was made for.

    Shapes: (B, 3, S, S) -> (B, D).
    """

    def __init__(
        self,
        embedding_size: int = 512,
        graph: Mapping[str, Any] | None = None,
        input_size: int = 112,
    ) -> None:
        super().__init__()
        if not isinstance(graph, Mapping) or not {"input", "output", "nodes"} <= set(graph):
            raise ValueError("onnx_graph: graph must be a description with input, output, nodes")
        self.input_size = input_size
        self.embedding_size = embedding_size
        self.graph = graph
        self.input_name = str(graph["input"])
        self.output_name = str(graph["output"])
        self.nodes = list(graph["nodes"])
        self.ops = nn.ModuleDict()
        for node in self.nodes:
            if node["op"] in PARAM_NAMES and node.get("module"):
                self.ops[node["module"]] = _module_for(node)
        self.consts = nn.Module()
        self._const_names: dict[str, str] = {}
        for value, spec in dict(graph.get("consts", {})).items():
            dtype = NAME_DTYPES[spec["dtype"]]
            self.consts.register_buffer(spec["key"], torch.zeros(spec["shape"], dtype=dtype))
            self._const_names[value] = spec["key"]

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        """The graph's stages for ``--freeze`` (:func:`marginface.training.finetune.freeze`),
        input first: the nodes cut before each strided convolution (where the resolution
        drops), as ``("nodes[a:b]", their modules)``. The nodes from the last strided
        convolution on hold the embedding layers and are never a stage."""
        cuts = [
            i
            for i, node in enumerate(self.nodes)
            if i > 0
            and node["op"] == "Conv"
            and any(int(s) > 1 for s in node.get("attrs", {}).get("strides", []))
        ]
        bounds = [0, *cuts]
        return [
            (f"nodes[{a}:{b}]", [self.ops[n["module"]] for n in self.nodes[a:b] if n.get("module")])
            for a, b in zip(bounds, bounds[1:], strict=False)
        ]

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, S, S) model-ready images -> the graph's output (B, D)."""
        env: dict[str, Any] = {self.input_name: x}
        for value, key in self._const_names.items():
            env[value] = getattr(self.consts, key)
        for node in self.nodes:
            args = [env[name] if name else None for name in node["inputs"]]
            module = self.ops[node["module"]] if node.get("module") else None
            result = _run(node, args, module)
            outputs = node["outputs"]
            if isinstance(result, tuple):
                for name, value in zip(outputs, result, strict=False):
                    env[name] = value
            else:
                env[outputs[0]] = result
        return env[self.output_name]


def _run(node: Mapping[str, Any], args: list[Any], module: nn.Module | None) -> Any:
    """One node's output(s); ``args`` are its dynamic inputs in ONNX order (None = absent)."""
    op, attrs = node["op"], node["attrs"]
    x = args[0] if args else None
    if module is not None:
        if op == "Conv" and node.get("pre_pad"):
            x = F.pad(x, node["pre_pad"])
        return module(x)
    if op in ("Identity", "Dropout"):
        return x
    if op == "Relu":
        return F.relu(x)
    if op == "PRelu":
        return torch.where(x >= 0, x, x * args[1])
    if op == "LeakyRelu":
        return F.leaky_relu(x, float(attrs.get("alpha", 0.01)))
    if op == "Sigmoid":
        return torch.sigmoid(x)
    if op == "Tanh":
        return torch.tanh(x)
    if op == "Clip":
        low = args[1] if len(args) > 1 and args[1] is not None else attrs.get("min")
        high = args[2] if len(args) > 2 and args[2] is not None else attrs.get("max")
        low = float(low) if low is not None else None
        high = float(high) if high is not None else None
        return torch.clamp(x, low, high)
    if op in ("Add", "Sub", "Mul", "Div"):
        a, b = args[0], args[1]
        if op == "Add":
            return a + b
        if op == "Sub":
            return a - b
        if op == "Mul":
            return a * b
        if not a.is_floating_point() and not b.is_floating_point():
            return torch.div(a, b, rounding_mode="trunc")
        return a / b
    if op == "MatMul":
        return torch.matmul(args[0], args[1])
    if op == "Gemm":
        a, b = args[0], args[1]
        a = a.t() if attrs.get("transA") else a
        b = b.t() if attrs.get("transB") else b
        out = float(attrs.get("alpha", 1.0)) * (a @ b)
        if len(args) > 2 and args[2] is not None:
            out = out + float(attrs.get("beta", 1.0)) * args[2]
        return out
    if op == "Flatten":  # to 2-D: (prod of dims before axis, prod of the rest)
        axis = int(attrs.get("axis", 1))
        axis = axis + x.dim() if axis < 0 else axis
        if axis == 0:
            return x.reshape(1, -1)
        head = x.flatten(0, axis - 1) if axis > 1 else x
        return head.flatten(1) if axis < x.dim() else head.reshape(-1, 1)
    if op == "Reshape":
        target = args[1].long()
        if not attrs.get("allowzero", 0) and bool((target == 0).any()):
            current = shape_as_tensor(x)[: target.numel()].to(target.device)
            head = target[: current.numel()]
            target = torch.cat([torch.where(head == 0, current, head), target[current.numel() :]])
        if torch.jit.is_tracing():  # an ONNX export of the module: keep the shape computed
            return reshape_from_tensor_shape(x, target)
        return x.reshape(_ints(target))
    if op == "Transpose":
        perm = attrs.get("perm") or list(reversed(range(x.dim())))
        return x.permute(*perm)
    if op == "Concat":
        return torch.cat([a for a in args if a is not None], dim=int(attrs["axis"]))
    if op == "GlobalAveragePool":
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
    if op == "ReduceMean":
        axes = attrs.get("axes") or (
            _ints(args[1]) if len(args) > 1 and args[1] is not None else None
        )
        dims = tuple(axes) if axes else tuple(range(x.dim()))
        return x.mean(dim=dims, keepdim=bool(attrs.get("keepdims", 1)))
    if op in ("MaxPool", "AveragePool"):
        kernel = attrs["kernel_shape"]
        strides = attrs.get("strides", [1] * len(kernel))
        begins, _ = _pairs(attrs.get("pads", [0] * 2 * len(kernel)), len(kernel))
        ceil = bool(attrs.get("ceil_mode", 0))
        if op == "MaxPool":
            return F.max_pool2d(x, kernel, strides, begins, ceil_mode=ceil)
        include = bool(attrs.get("count_include_pad", 0))
        return F.avg_pool2d(x, kernel, strides, begins, ceil_mode=ceil, count_include_pad=include)
    if op == "Pad":
        pads = attrs.get("pads") or _ints(args[1])
        value = attrs.get("value", 0.0)
        if len(args) > 2 and args[2] is not None:
            value = float(args[2].reshape(-1)[0])
        mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[
            attrs.get("mode", "constant")
        ]
        padding = _torch_pad(pads)
        if mode == "constant":
            return F.pad(x, padding, value=value)
        return F.pad(x, padding, mode=mode)
    if op == "Shape":
        return shape_as_tensor(x)[attrs.get("start", 0) : attrs.get("end")]
    if op == "Gather":
        axis = int(attrs.get("axis", 0)) % x.dim()
        idx = args[1].long() % x.shape[axis]
        if idx.dim() == 0:
            return x.select(axis, int(idx))
        out = torch.index_select(x, axis, idx.reshape(-1))
        return out.reshape(*x.shape[:axis], *idx.shape, *x.shape[axis + 1 :])
    if op in ("Unsqueeze", "Squeeze"):
        axes = attrs.get("axes")
        if axes is None and len(args) > 1 and args[1] is not None:
            axes = _ints(args[1])
        if op == "Squeeze":
            if axes is None:
                return x.squeeze()
            rank = x.dim()
            return x.squeeze(tuple(a % rank for a in axes))
        rank = x.dim() + len(axes)
        for a in sorted(a % rank for a in axes):
            x = x.unsqueeze(a)
        return x
    if op == "Cast":
        return x.to(DTYPES[int(attrs["to"])])
    if op == "ConstantOfShape":
        dtype = NAME_DTYPES[attrs.get("dtype", "float32")]
        shape = _ints(x)
        if any(n < 0 for n in shape) or int(np.prod(shape, dtype=np.float64)) > MAX_ELEMENTS:
            raise ValueError(f"ONNX node {node['name']!r}: ConstantOfShape of shape {shape}")
        return torch.full(shape, attrs.get("value", 0.0), dtype=dtype)
    if op == "Slice":
        starts, ends = _ints(args[1]), _ints(args[2])
        axes = _ints(args[3]) if len(args) > 3 and args[3] is not None else range(len(starts))
        steps = _ints(args[4]) if len(args) > 4 and args[4] is not None else [1] * len(starts)
        for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
            axis %= x.dim()
            picked = range(*slice(start, end, step).indices(x.shape[axis]))
            if step == 1:
                x = x.narrow(axis, picked.start, len(picked))
            else:
                x = torch.index_select(x, axis, torch.tensor(list(picked), device=x.device))
        return x
    raise ValueError(f"ONNX node {node['name']!r}: op {op} is not supported")


@register_backbone("onnx_graph")
def onnx_graph(
    embedding_size: int = 512, graph: Mapping[str, Any] | None = None, input_size: int = 112
) -> OnnxGraph:
    """A network converted from ONNX by ``marginface import`` (its graph description)."""
    return OnnxGraph(embedding_size, graph, input_size)


# --- conversion: ONNX ModelProto -> (graph description, state dict) -------------------------


def _attr_value(attr: Any) -> Any:
    import onnx
    from onnx import numpy_helper

    kind = attr.type
    A = onnx.AttributeProto
    if kind == A.FLOAT:
        return float(attr.f)
    if kind == A.INT:
        return int(attr.i)
    if kind == A.STRING:
        return attr.s.decode("utf-8", "replace")
    if kind == A.FLOATS:
        return [float(v) for v in attr.floats]
    if kind == A.INTS:
        return [int(v) for v in attr.ints]
    if kind == A.TENSOR:
        return numpy_helper.to_array(attr.t)
    raise ValueError(f"attribute {attr.name} of type {kind}")


def _key(text: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_") or "t"
    if base[0].isdigit():
        base = "t" + base
    key, n = base, 1
    while key in used:
        n += 1
        key = f"{base}_{n}"
    used.add(key)
    return key


def _check_node(node: Any, attrs: Mapping[str, Any], label: str) -> None:
    """ValueError naming the op and node for whatever this converter does not implement."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        raise ValueError(f"{label}: op {node.domain}.{op} (a custom domain) is not supported")
    if op not in SUPPORTED:
        raise ValueError(
            f"{label}: op {op} is not supported by marginface's ONNX converter "
            f"(supported: {', '.join(SUPPORTED)})"
        )
    if op == "Conv" and attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise ValueError(f"{label}: Conv auto_pad={attrs['auto_pad']} is not supported")
    if op in ("MaxPool", "AveragePool"):
        kernel = attrs.get("kernel_shape", [])
        pads = attrs.get("pads", [0] * 2 * len(kernel))
        if len(kernel) != 2 or attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise ValueError(f"{label}: {op} is supported for 2-D windows without auto_pad only")
        if pads[:2] != pads[2:] or attrs.get("dilations", [1, 1]) != [1, 1]:
            raise ValueError(f"{label}: {op} with asymmetric pads or dilation is not supported")
        if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
            raise ValueError(f"{label}: MaxPool's indices output is not supported")
    if op == "Pad" and attrs.get("mode", "constant") not in ("constant", "reflect", "edge"):
        raise ValueError(f"{label}: Pad mode {attrs['mode']} is not supported")
    if op == "Pad" and len(node.input) > 3 and node.input[3]:
        raise ValueError(f"{label}: Pad with axes is not supported")
    if op == "BatchNormalization" and attrs.get("training_mode", 0):
        raise ValueError(f"{label}: BatchNormalization in training mode is not supported")
    if op == "Cast" and int(attrs.get("to", 1)) not in DTYPES:
        raise ValueError(f"{label}: Cast to ONNX type {attrs.get('to')} is not supported")


def convert_onnx(
    model: Any, source: str = "ONNX model", batch: int | None = None
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``(graph description, state dict)`` of an ONNX ``ModelProto`` with one input and one
    output; ValueError naming ``source`` and the node for anything not supported (nothing runs).

    ``batch``: the batch size the file fixes, if any: a constant ``Reshape`` shape starting with
    it starts with 0 instead (ONNX: "this dimension of the input"), so that the module takes any
    batch (the importer checks that it does).
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    for t in graph.initializer:
        if t.data_location == 1:  # EXTERNAL
            raise ValueError(f"{source}: tensor {t.name!r} is stored in an external data file")
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise ValueError(f"{source}: expected one image input, found {len(inputs)} ({names})")
    if len(graph.output) != 1:
        names = ", ".join(o.name for o in graph.output)
        raise ValueError(
            f"{source}: expected one embedding output, found {len(graph.output)} ({names})"
        )
    used: set[str] = set()
    state: dict[str, Tensor] = {}
    consts: dict[str, dict[str, Any]] = {}
    arrays: dict[str, np.ndarray] = {}  # constant values known at conversion

    def array(name: str) -> np.ndarray:
        if name not in arrays:
            arrays[name] = numpy_helper.to_array(inits[name])
        return arrays[name]

    def tensor(values: np.ndarray) -> Tensor:
        t = torch.from_numpy(np.array(values, copy=True))
        if t.dtype not in DTYPE_NAMES:
            raise ValueError(f"{source}: a constant has unsupported type {t.dtype}")
        return t

    nodes: list[dict[str, Any]] = []
    for index, node in enumerate(graph.node):
        label = f"{source}: ONNX node {node.name or index!r}"
        try:
            attrs = {a.name: _attr_value(a) for a in node.attribute}
        except ValueError as exc:
            raise ValueError(f"{label} (op {node.op_type}): unsupported {exc}") from None
        _check_node(node, attrs, label)
        if node.op_type == "Constant":
            value = attrs.get("value")
            if value is None:
                for k in ("value_float", "value_int", "value_floats", "value_ints"):
                    if k in attrs:
                        value = np.asarray(attrs[k], dtype=np.float32 if "float" in k else np.int64)
            if value is None:
                raise ValueError(f"{label}: Constant without a tensor value is not supported")
            arrays[node.output[0]] = np.asarray(value)
            continue
        if node.op_type == "Identity" and (node.input[0] in inits or node.input[0] in arrays):
            # a shared weight (torch's exporter de-duplicates equal initializers this way): each
            # user gets its own copy, so fine-tuning unties them
            src = node.input[0]
            arrays[node.output[0]] = array(src) if src in inits else arrays[src]
            continue
        if node.op_type == "ConstantOfShape":
            fill = np.asarray(attrs.pop("value", np.zeros(1, dtype=np.float32))).reshape(-1)
            if fill.size != 1 or torch.from_numpy(fill.copy()).dtype not in DTYPE_NAMES:
                raise ValueError(f"{label}: ConstantOfShape's value must be one number")
            attrs["dtype"] = DTYPE_NAMES[torch.from_numpy(fill.copy()).dtype]
            attrs["value"] = fill.item()
        entry: dict[str, Any] = {
            "op": node.op_type,
            "name": node.name or f"node{index}",
            "inputs": list(node.input),
            "outputs": list(node.output),
            "attrs": {k: v for k, v in attrs.items() if not isinstance(v, np.ndarray)},
            "shapes": {},
        }
        known = [n for n in node.input if n]
        if node.op_type not in PARAM_NAMES and all(n in inits or n in arrays for n in known):
            # every input is a constant (shape arithmetic of an export): computed now, once
            values = [
                torch.from_numpy(np.array(array(n) if n in inits else arrays[n])) if n else None
                for n in node.input
            ]
            try:
                result = _run(entry, values, None)
            except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                raise ValueError(
                    f"{label} (op {node.op_type}): cannot compute it ({exc})"
                ) from None
            results = result if isinstance(result, tuple) else (result,)
            for name, value in zip(node.output, results, strict=False):
                arrays[name] = value.numpy()
            continue
        weights = PARAM_NAMES.get(node.op_type, {})
        module_inputs = {
            pos: name
            for pos, name in enumerate(node.input)
            if pos in weights and name and (name in inits or name in arrays)
        }
        if node.op_type == "Conv" and 1 not in module_inputs:
            raise ValueError(
                f"{label}: Conv with a computed (non-constant) weight is not supported"
            )
        if node.op_type == "BatchNormalization" and len(module_inputs) != 4:
            raise ValueError(
                f"{label}: BatchNormalization with computed statistics is not supported"
            )
        if node.op_type == "PRelu" and 1 not in module_inputs:
            module_inputs = {}
        if node.op_type in ("Gemm", "MatMul") and 1 not in module_inputs:
            module_inputs = {}
        if node.op_type == "Gemm" and module_inputs and attrs.get("transA", 0):
            module_inputs = {}
        if module_inputs:
            key = _key(f"{node.op_type.lower()}{index}", used)
            entry["module"] = key
            for pos, name in module_inputs.items():
                short, param = weights[pos]
                value = array(name) if name in inits else arrays[name]
                entry["shapes"][short] = [int(n) for n in value.shape]
                state[f"ops.{key}.{param}"] = tensor(value).float()
            entry["inputs"] = [n for pos, n in enumerate(node.input) if pos not in module_inputs]
            if node.op_type == "BatchNormalization":
                state[f"ops.{key}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
            if node.op_type == "Conv":
                begins, symmetric = _pairs(attrs.get("pads", [0, 0, 0, 0]), 2)
                if not symmetric:
                    pads = attrs["pads"]
                    entry["pre_pad"] = [pads[1], pads[3], pads[0], pads[2]]
                    entry["attrs"]["pads"] = [0, 0, 0, 0]
        nodes.append(entry)
    if batch is not None:
        for entry in nodes:
            shape = entry["inputs"][1] if entry["op"] == "Reshape" else None
            if (
                shape
                and (shape in inits or shape in arrays)
                and not entry["attrs"].get("allowzero")
            ):
                value = np.array(array(shape) if shape in inits else arrays[shape])
                if value.ndim == 1 and len(value) > 1 and value[0] == batch:
                    value[0] = 0
                    arrays[f"{shape}:any_batch"] = value
                    entry["inputs"][1] = f"{shape}:any_batch"
    # every other constant input (initializer or Constant node) becomes a buffer
    for entry in nodes:
        for name in entry["inputs"]:
            if name and name not in consts and (name in inits or name in arrays):
                value = array(name) if name in inits else arrays[name]
                t = tensor(value)
                key = _key(f"c_{name}", used)
                consts[name] = {"key": key, "shape": list(t.shape), "dtype": DTYPE_NAMES[t.dtype]}
                state[f"consts.{key}"] = t
    description = {
        "format": 1,
        "input": inputs[0].name,
        "output": graph.output[0].name,
        "nodes": nodes,
        "consts": consts,
    }
    return description, state
