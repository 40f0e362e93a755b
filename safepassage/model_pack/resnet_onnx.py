"""Convert dlib's face recognition ResNet into an ONNX model that computes the same function.

Model contract (what the pipeline feeds it):

- input ``chips``: float32 (N, 3, 150, 150), NCHW, RGB, already normalised as
  (pixel - mean_rgb[c]) * scale, with mean_rgb and scale from ``ResnetInfo`` (the caller does
  this from the manifest, so any user model goes through the same path);
- output ``embeddings``: float32 (N, 128), dlib's descriptor (not re-normalised).

Inference-only rewrites: each affine (dlib's frozen batch norm) is folded into the preceding
convolution; the residual ``add_prev`` zero-pads the smaller operand at the end of the
channel, height and width axes, as dlib's add does. The file is written deterministically
(fixed producer, no timestamps), so its sha256 is stable for a given source file.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from safepassage.core import atomic_file
from safepassage.model_pack.errors import ModelFormatError, ModelSourceMissing
from safepassage.model_pack.resnet_parse import (
    AddPrev,
    Affine,
    Conv,
    FullyConnected,
    Layer,
    ParsedNetwork,
    Pool,
    Relu,
    Skip,
    Tag,
    parse_face_resnet,
)

logger = logging.getLogger(__name__)

INPUT_NAME = "chips"
OUTPUT_NAME = "embeddings"
BATCH_DIM = "N"
OPSET = 17
IR_VERSION = 8  # the IR that opset 17 came with; readable by every onnxruntime since 1.13
PRODUCER_NAME = "safepassage.model_pack"
PRODUCER_VERSION = "1"
# dlib's input_rgb_image_sized::to_tensor divides by 256 by definition; the file has no field for it.
INPUT_SCALE = 1.0 / 256.0

Shape = tuple[int, ...]  # one sample: (channels, rows, cols), or (features,) after a flatten


@dataclass(frozen=True)
class ResnetInfo:
    """What the conversion found in the dlib file and wrote to the ONNX file."""

    input_size: int
    output_dim: int
    mean_rgb: tuple[float, float, float]
    scale: float
    conv_layers: int
    affine_layers: int
    relu_layers: int
    pool_layers: int
    residual_adds: int
    fc_layers: int
    parameter_count: int  # as dlib counts them: every layer's params tensor
    onnx_parameter_count: int  # after folding the affines into the convolutions
    distance_threshold: float  # from the file's loss layer: dlib's "same person" distance
    source_sha256: str
    onnx_sha256: str


def convert_resnet(dat_path: Path, onnx_path: Path) -> ResnetInfo:
    """Parse ``dat_path`` (every byte), build the ONNX graph, check it and write it to ``onnx_path``."""
    try:
        data = dat_path.read_bytes()
    except FileNotFoundError as error:
        raise ModelSourceMissing(f"{dat_path}: dlib ResNet model file not found") from error
    network = parse_face_resnet(data, str(dat_path))
    if network.input.rows != network.input.cols:
        raise ModelFormatError(f"{dat_path}: input {network.input.rows}x{network.input.cols} is not square")
    source_sha256 = hashlib.sha256(data).hexdigest()
    model = build_model(network, source_name=dat_path.name, source_sha256=source_sha256)
    payload = model.SerializeToString(deterministic=True)
    atomic_file.replace(onnx_path, payload, mode=None)  # readers never see half a model; not secret
    info = _describe(network, model, source_sha256, hashlib.sha256(payload).hexdigest())
    logger.info(
        "converted %s -> %s: %d conv, %d parameters, sha256 %s",
        dat_path,
        onnx_path,
        info.conv_layers,
        info.parameter_count,
        info.onnx_sha256[:16],
    )
    return info


def build_model(network: ParsedNetwork, source_name: str, source_sha256: str) -> onnx.ModelProto:
    """The checked ONNX model of ``network``; ModelFormatError if its layers do not fit together."""
    graph = _GraphBuilder((network.input.rows, network.input.cols), source_name)
    graph.run(network.layers)
    model = helper.make_model(
        graph.finish(),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER_NAME,
        producer_version=PRODUCER_VERSION,
        ir_version=IR_VERSION,
    )
    metadata = {
        "source_file": source_name,
        "source_sha256": source_sha256,
        "mean_rgb": ",".join(repr(v) for v in _mean_rgb(network)),
        "scale": repr(INPUT_SCALE),
        "distance_threshold": repr(_shortest(network.loss.distance_threshold)),
    }
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def _shortest(value: float) -> float:
    """The shortest decimal that is the same float32: dlib stores these as float (122.782, not ...99768)."""
    return float(np.format_float_positional(np.float32(value)))


def _mean_rgb(network: ParsedNetwork) -> tuple[float, float, float]:
    red, green, blue = (_shortest(v) for v in network.input.mean_rgb)
    return red, green, blue


def _describe(network: ParsedNetwork, model: onnx.ModelProto, source_sha: str, onnx_sha: str) -> ResnetInfo:
    layers = network.layers
    fcs = [layer for layer in layers if isinstance(layer, FullyConnected)]
    return ResnetInfo(
        input_size=network.input.rows,
        output_dim=int(fcs[-1].weights.shape[1]),
        mean_rgb=_mean_rgb(network),
        scale=INPUT_SCALE,
        conv_layers=_count(layers, Conv),
        affine_layers=_count(layers, Affine),
        relu_layers=_count(layers, Relu) + sum(isinstance(layer, Conv) and layer.relu for layer in layers),
        pool_layers=_count(layers, Pool),
        residual_adds=_count(layers, AddPrev),
        fc_layers=len(fcs),
        parameter_count=network.parameter_count,
        onnx_parameter_count=_float_parameters(model),
        distance_threshold=_shortest(network.loss.distance_threshold),
        source_sha256=source_sha,
        onnx_sha256=onnx_sha,
    )


def _float_parameters(model: onnx.ModelProto) -> int:
    """Weights only: the int64 pad amounts are not parameters."""
    tensors = model.graph.initializer
    return sum(int(np.prod(t.dims)) for t in tensors if t.data_type == TensorProto.FLOAT)


def _count(layers: Sequence[Layer], kind: type) -> int:
    return sum(isinstance(layer, kind) for layer in layers)


@dataclass(frozen=True)
class _Value:
    name: str
    shape: Shape


class _GraphBuilder:
    """Walks the layers in forward order like dlib's forward pass, emitting ONNX nodes."""

    def __init__(self, size: tuple[int, int], source_name: str) -> None:
        self.source_name = source_name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.current = _Value(INPUT_NAME, (3, *size))
        self.input_size = size
        self.tags: dict[int, _Value] = {}
        self.counter = 0

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.source_name}: {what}")

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}_{self.counter}"

    def constant(self, stem: str, array: npt.NDArray[np.generic]) -> str:
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: Sequence[str], shape: Shape, **attributes: Any) -> _Value:
        output = self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [output], name=output, **attributes))
        return _Value(output, shape)

    def run(self, layers: Sequence[Layer]) -> None:
        index = 0
        while index < len(layers):
            layer = layers[index]
            following = layers[index + 1] if index + 1 < len(layers) else None
            if isinstance(layer, Conv) and isinstance(following, Affine) and not layer.relu:
                self.current = self.conv(layer, following)
                index += 2
                continue
            self.step(layer)
            index += 1

    def step(self, layer: Layer) -> None:
        if isinstance(layer, Conv):
            self.current = self.conv(layer, None)
        elif isinstance(layer, Affine):
            self.current = self.affine(layer)
        elif isinstance(layer, Relu):
            if not layer.disabled:
                self.current = self.node("Relu", [self.current.name], self.current.shape)
        elif isinstance(layer, Pool):
            self.current = self.pool(layer)
        elif isinstance(layer, Tag):
            self.tags[layer.id] = self.current
        elif isinstance(layer, Skip):
            self.current = self.tagged(layer.id)
        elif isinstance(layer, AddPrev):
            self.current = self.add(self.current, self.tagged(layer.tag))
        else:
            self.current = self.fully_connected(layer)

    def tagged(self, tag: int) -> _Value:
        if tag not in self.tags:
            raise self.fail(f"a layer refers to tag{tag}, which no layer below sets")
        return self.tags[tag]

    def conv(self, conv: Conv, affine: Affine | None) -> _Value:
        channels, rows, cols = self.spatial()
        filters, inputs, window_y, window_x = conv.weights.shape
        if inputs != channels:
            raise self.fail(f"a convolution expects {inputs} channels, its input has {channels}")
        weights, bias = conv.weights.astype(np.float64), conv.bias.astype(np.float64)
        if affine is not None:
            # affine(conv(x)) = conv_{W*g}(x) + (b*g + beta): one node instead of three.
            self.check_channels(affine, filters)
            weights = weights * affine.gamma.astype(np.float64)[:, None, None, None]
            bias = bias * affine.gamma + affine.beta.astype(np.float64)
        shape = (
            filters,
            self.output_size(rows, window_y, conv.stride[0], conv.padding[0]),
            self.output_size(cols, window_x, conv.stride[1], conv.padding[1]),
        )
        value = self.node(
            "Conv",
            [
                self.current.name,
                self.constant("conv_w", weights.astype(np.float32)),
                self.constant("conv_b", bias.astype(np.float32)),
            ],
            shape,
            kernel_shape=[window_y, window_x],
            strides=list(conv.stride),
            pads=[conv.padding[0], conv.padding[1], conv.padding[0], conv.padding[1]],
        )
        if conv.relu:
            value = self.node("Relu", [value.name], value.shape)
        return value

    def affine(self, affine: Affine) -> _Value:
        channels = self.spatial()[0]
        self.check_channels(affine, channels)
        gamma = self.constant("gamma", affine.gamma.reshape(1, channels, 1, 1))
        beta = self.constant("beta", affine.beta.reshape(1, channels, 1, 1))
        scaled = self.node("Mul", [self.current.name, gamma], self.current.shape)
        return self.node("Add", [scaled.name, beta], self.current.shape)

    def pool(self, pool: Pool) -> _Value:
        channels, rows, cols = self.spatial()
        if pool.window == (0, 0):  # dlib: a zero window means the whole input
            if pool.kind == "avg":
                return self.node("GlobalAveragePool", [self.current.name], (channels, 1, 1))
            return self.node("GlobalMaxPool", [self.current.name], (channels, 1, 1))
        if 0 in pool.window:
            raise self.fail(f"pooling window {pool.window} spans the input on one axis only")
        if pool.kind == "avg" and pool.padding != (0, 0):
            # dlib averages only the pixels inside the image; not needed by this network.
            raise self.fail(f"average pooling with padding {pool.padding} is not supported")
        shape = (
            channels,
            self.output_size(rows, pool.window[0], pool.stride[0], pool.padding[0]),
            self.output_size(cols, pool.window[1], pool.stride[1], pool.padding[1]),
        )
        return self.node(
            "MaxPool" if pool.kind == "max" else "AveragePool",
            [self.current.name],
            shape,
            kernel_shape=list(pool.window),
            strides=list(pool.stride),
            pads=[pool.padding[0], pool.padding[1], pool.padding[0], pool.padding[1]],
        )

    def add(self, first: _Value, second: _Value) -> _Value:
        """dlib's add_prev: the larger of the two shapes on each axis, missing elements read as 0."""
        if len(first.shape) != 3 or len(second.shape) != 3:
            raise self.fail("a residual add after the fully connected layer")
        shape = tuple(max(a, b) for a, b in zip(first.shape, second.shape, strict=True))
        padded = [self.pad_to(value, shape) for value in (first, second)]
        return self.node("Add", padded, shape)

    def pad_to(self, value: _Value, shape: Shape) -> str:
        if value.shape == shape:
            return value.name
        extra = [target - have for target, have in zip(shape, value.shape, strict=True)]
        # ONNX pads: begins of N, C, H, W, then ends of N, C, H, W; dlib aligns at index 0.
        pads = self.constant("pads", np.array([0, 0, 0, 0, 0, *extra], dtype=np.int64))
        return self.node("Pad", [value.name, pads], shape, mode="constant").name

    def fully_connected(self, fc: FullyConnected) -> _Value:
        inputs, outputs = fc.weights.shape
        flat_size = int(np.prod(self.current.shape))
        if inputs != flat_size:
            raise self.fail(f"the fully connected layer expects {inputs} inputs, gets {flat_size}")
        # dlib flattens each sample's k*nr*nc values in NCHW order, as ONNX Flatten does.
        flat = self.node("Flatten", [self.current.name], (flat_size,), axis=1)
        value = self.node("MatMul", [flat.name, self.constant("fc_w", fc.weights)], (outputs,))
        if fc.bias is not None:
            value = self.node("Add", [value.name, self.constant("fc_b", fc.bias)], (outputs,))
        return value

    def spatial(self) -> tuple[int, int, int]:
        if len(self.current.shape) != 3:
            raise self.fail("a spatial layer after the fully connected layer")
        channels, rows, cols = self.current.shape
        return channels, rows, cols

    def check_channels(self, affine: Affine, channels: int) -> None:
        if affine.gamma.shape != (channels,):
            raise self.fail(f"an affine layer has {affine.gamma.shape[0]} channels, its input has {channels}")

    def output_size(self, size: int, window: int, stride: int, padding: int) -> int:
        """dlib's (and ONNX's floor-mode) output size of a convolution or pooling window."""
        result = 1 + (size + 2 * padding - window) // stride
        if result < 1:
            raise self.fail(f"window {window} stride {stride} does not fit an input of {size}")
        return result

    def finish(self) -> onnx.GraphProto:
        if len(self.current.shape) != 1 or self.nodes[-1].op_type not in ("MatMul", "Add"):
            raise self.fail("the network does not end in a fully connected layer")
        # Rename the last node's output to the contract's name.
        self.nodes[-1].output[0] = OUTPUT_NAME
        chips = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, 3, *self.input_size])
        embeddings = helper.make_tensor_value_info(
            OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, self.current.shape[0]]
        )
        return helper.make_graph(
            self.nodes,
            "dlib_face_resnet_v1",
            [chips],
            [embeddings],
            self.initializers,
            doc_string=f"converted from {self.source_name}",
        )
