"""Parse dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) into numpy layers.

dlib's network files are not self-describing: the C++ type (``anet_type`` in dlib's
``tools/python/src/face_recognition.cpp``) decides what is read, and the file only carries
each layer's details. So, like dlib, the parser is driven by that type, written out here as
``FACE_RESNET_V1`` (a list of slots in forward order), and checks every record against it.

File layout (dlib/dnn/core.h): the loss layer writes its version, its details, then its
subnet; every ``add_layer`` writes its version, then its subnet, then its own details and
training state; tag and skip layers write a version and their subnet. So the file is the
loss record, a run of version integers from the outermost layer inwards, the input layer,
and then each layer's record in forward order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from safepassage.model_pack.dlib_serialization import Reader

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]

# dlib's add_layer versions: 2 adds params_grad; on the input, 3 adds sample_expansion_factor.
_LAYER_VERSIONS = (1, 2)
_INPUT_LAYER_VERSIONS = (2, 3)
_WRAPPER_VERSION = 1  # add_tag_layer and add_skip_layer over a subnet
_CONV_MODE = 0  # dlib's layer_mode for affine_
_FC_NO_BIAS = 1  # dlib's fc_bias_mode


# ---------------------------------------------------------------- parsed layers


@dataclass(frozen=True)
class InputLayer:
    """input_rgb_image_sized: pixels become (p - mean[c]) / 256 in dlib's to_tensor."""

    mean_rgb: tuple[float, float, float]
    rows: int
    cols: int


@dataclass(frozen=True, eq=False)
class Conv:
    weights: Floats  # (out, in, rows, cols), cross-correlation like ONNX Conv
    bias: Floats  # (out,)
    stride: tuple[int, int]
    padding: tuple[int, int]
    relu: bool  # con_6 can fuse a relu


@dataclass(frozen=True, eq=False)
class Affine:
    """Per-channel y = x * gamma + beta (a batch norm already folded for inference)."""

    gamma: Floats
    beta: Floats
    from_batch_norm: bool


@dataclass(frozen=True)
class Relu:
    disabled: bool


@dataclass(frozen=True)
class Pool:
    kind: Literal["max", "avg"]
    window: tuple[int, int]  # (0, 0): over the whole input
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Tag:
    id: int


@dataclass(frozen=True)
class Skip:
    id: int


@dataclass(frozen=True)
class AddPrev:
    """Adds the output of the nearest Tag ``tag`` below; the larger shape wins, the rest reads as 0."""

    tag: int


@dataclass(frozen=True, eq=False)
class FullyConnected:
    weights: Floats  # (inputs, outputs): y = x W
    bias: Floats | None


@dataclass(frozen=True)
class LossMetric:
    margin: float
    distance_threshold: float


Layer = Conv | Affine | Relu | Pool | Tag | Skip | AddPrev | FullyConnected


@dataclass(frozen=True)
class ParsedNetwork:
    input: InputLayer
    layers: tuple[Layer, ...]  # forward order
    loss: LossMetric
    parameter_count: int  # sum of the layers' params tensors, as dlib counts them


# ---------------------------------------------------------------- the expected network


@dataclass(frozen=True)
class Slot:
    """One layer of the expected network: its kind and its C++ template arguments."""

    kind: Literal["con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "tag", "skip", "fc"]
    number: int = 0  # filters, outputs, or tag id
    window: int = 0
    stride: int = 1

    @property
    def padding(self) -> int:
        # dlib's default for con_ and the pools: no padding when strided, else "same".
        return 0 if self.stride != 1 else self.window // 2


def _block(filters: int, stride: int) -> list[Slot]:
    return [
        Slot("con", filters, 3, stride),
        Slot("affine"),
        Slot("relu"),
        Slot("con", filters, 3, 1),
        Slot("affine"),
    ]


def _residual(filters: int) -> list[Slot]:
    """ares: relu(x + block(x))."""
    return [Slot("tag", 1), *_block(filters, 1), Slot("add_prev", 1), Slot("relu")]


def _residual_down(filters: int) -> list[Slot]:
    """ares_down: relu(avg_pool2x2(x) + block_stride2(x))."""
    return [
        Slot("tag", 1),
        *_block(filters, 2),
        Slot("tag", 2),
        Slot("skip", 1),
        Slot("avg_pool", 0, 2, 2),
        Slot("add_prev", 2),
        Slot("relu"),
    ]


def _face_resnet_v1() -> tuple[Slot, ...]:
    slots = [Slot("con", 32, 7, 2), Slot("affine"), Slot("relu"), Slot("max_pool", 0, 3, 2)]
    slots += _residual(32) * 3
    slots += _residual_down(64) + _residual(64) * 3
    slots += _residual_down(128) + _residual(128) * 2
    slots += _residual_down(256) + _residual(256) * 2
    slots += _residual_down(256)
    slots += [Slot("avg_pool", 0, 0, 1), Slot("fc", 128)]
    return tuple(slots)


FACE_RESNET_V1 = _face_resnet_v1()


# ---------------------------------------------------------------- parsing


def parse_face_resnet(data: bytes, name: str, slots: Sequence[Slot] = FACE_RESNET_V1) -> ParsedNetwork:
    """Parse the whole file (every byte) into layers; ModelFormatError naming ``name`` on any mismatch."""
    reader = Reader(data, name)
    reader.expect_integer(1, "loss layer version")
    loss = _read_loss(reader)
    versions = _read_versions(reader, slots)
    input_layer = _read_input(reader)
    layers: list[Layer] = []
    parameter_count = 0
    for index, (slot, version) in enumerate(zip(slots, versions, strict=True)):
        if slot.kind == "tag":
            layers.append(Tag(slot.number))
            continue
        if slot.kind == "skip":
            layers.append(Skip(slot.number))
            continue
        layer, parameters = _read_details(reader, slot, index)
        _read_training_state(reader, version, on_input=index == 0)
        layers.append(layer)
        parameter_count += parameters
    reader.expect_end()
    logger.debug("%s: %d layers, %d parameters", name, len(layers), parameter_count)
    return ParsedNetwork(input_layer, tuple(layers), loss, parameter_count)


def _read_loss(reader: Reader) -> LossMetric:
    kind = reader.string()
    if kind == "loss_metric_":
        return LossMetric(0.1, 0.75)  # the values dlib hard-coded before loss_metric_2
    if kind != "loss_metric_2":
        raise reader.fail(f"loss record is {kind!r}, expected 'loss_metric_2'")
    return LossMetric(reader.real(), reader.real())


def _read_versions(reader: Reader, slots: Sequence[Slot]) -> list[int]:
    """The run of versions, outermost first; returned in forward order like ``slots``."""
    if not slots or slots[0].kind in ("tag", "skip"):
        raise ValueError("the network must start with a layer on the input")
    versions: dict[int, int] = {}
    for index in reversed(range(len(slots))):
        kind = slots[index].kind
        version = reader.integer()
        if kind in ("tag", "skip"):
            allowed: tuple[int, ...] = (_WRAPPER_VERSION,)
        else:
            allowed = _INPUT_LAYER_VERSIONS if index == 0 else _LAYER_VERSIONS
        if version not in allowed:
            raise reader.fail(f"layer {index} ({kind}) has version {version}, expected one of {allowed}")
        versions[index] = version
    return [versions[index] for index in range(len(slots))]


def _read_input(reader: Reader) -> InputLayer:
    reader.expect_string("input_rgb_image_sized")
    mean = (reader.real(), reader.real(), reader.real())
    rows, cols = reader.integer(), reader.integer()
    if rows <= 0 or cols <= 0:
        raise reader.fail(f"input size {rows}x{cols}")
    return InputLayer(mean, rows, cols)


def _read_training_state(reader: Reader, version: int, on_input: bool) -> None:
    """What add_layer writes after a layer's details; none of it matters for inference."""
    for _ in range(3):  # setup called, gradient input stale, output and gradient disabled
        reader.boolean()
    reader.tensor()  # x_grad
    reader.tensor()  # cached_output
    if on_input:
        reader.tensor()  # grad_final
        if version >= 3:
            reader.integer()  # sample_expansion_factor
    elif version >= 2:
        reader.tensor()  # params_grad


def _read_details(reader: Reader, slot: Slot, index: int) -> tuple[Layer, int]:
    """One layer's own record; returns the layer and its parameter count."""
    start = reader.position
    kind = reader.string()
    where = f"layer {index} ({slot.kind})"
    if slot.kind == "con" and kind in ("con_4", "con_5", "con_6"):
        return _read_conv(reader, kind, slot, where)
    if slot.kind == "affine" and kind == "bn_con2":
        return _read_batch_norm(reader, where)
    if slot.kind == "affine" and kind in ("affine_", "affine_2"):
        return _read_affine(reader, kind, where)
    if slot.kind == "relu" and kind in ("relu_", "relu_2"):
        return Relu(disabled=reader.boolean() if kind == "relu_2" else False), 0
    if slot.kind in ("max_pool", "avg_pool") and kind == f"{slot.kind}_2":
        return _read_pool(reader, slot, where), 0
    if slot.kind == "add_prev" and kind == "add_prev_":
        return AddPrev(slot.number), 0
    if slot.kind == "fc" and kind in ("fc_2", "fc_3"):
        return _read_fc(reader, kind, slot, where)
    reader.position = start  # report where the record begins
    raise reader.fail(f"{where}: unexpected record {kind[:40]!r}")


def _check(reader: Reader, where: str, what: str, found: object, expected: object) -> None:
    if found != expected:
        raise reader.fail(f"{where}: {what} is {found}, expected {expected}")


def _split_params(reader: Reader, where: str, params: Floats, *sizes: int) -> list[Floats]:
    """Cut a layer's flat params tensor into the views its alias tensors describe."""
    flat = params.reshape(-1)
    _check(reader, where, "params size", flat.size, sum(sizes))
    offsets = np.cumsum((0, *sizes))
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(sizes))]


def _read_conv(reader: Reader, kind: str, slot: Slot, where: str) -> tuple[Layer, int]:
    params = reader.tensor()
    filters = reader.integer()
    rows, cols = reader.integer(), reader.integer()
    stride = (reader.integer(), reader.integer())
    padding = (reader.integer(), reader.integer())
    filter_shape = reader.alias_tensor()
    bias_shape = reader.alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.real()
    use_bias = reader.boolean() if kind in ("con_5", "con_6") else True
    relu = reader.boolean() if kind == "con_6" else False
    _check(reader, where, "filters", filters, slot.number)
    _check(reader, where, "window", (rows, cols), (slot.window, slot.window))
    _check(reader, where, "stride", stride, (slot.stride, slot.stride))
    _check(reader, where, "padding", padding, (slot.padding, slot.padding))
    _check(reader, where, "filter view", (filter_shape[0], *filter_shape[2:]), (filters, rows, cols))
    _check(reader, where, "bias view", bias_shape, (1, filters, 1, 1))
    bias_size = filters if use_bias else 0
    weights, bias = _split_params(reader, where, params, int(np.prod(filter_shape)), bias_size)
    if not use_bias:
        bias = np.zeros(filters, dtype=np.float32)
    conv = Conv(weights.reshape(filter_shape), bias, stride, padding, relu)
    return conv, params.size


def _read_batch_norm(reader: Reader, where: str) -> tuple[Layer, int]:
    """bn_con2, folded into an affine exactly as dlib's affine_(const bn_&) does, in float32."""
    params = reader.tensor()
    gamma_shape, beta_shape = reader.alias_tensor(), reader.alias_tensor()
    reader.tensor()  # means of the last training batch
    reader.tensor()  # invstds of the last training batch
    running_means, running_variances = reader.tensor(), reader.tensor()
    reader.integer()  # num_updates
    reader.integer()  # running_stats_window_size
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.real()
    eps = reader.real()
    channels = gamma_shape[1]
    for what, shape in (("gamma", gamma_shape), ("beta", beta_shape)):
        _check(reader, where, f"{what} view", shape, (1, channels, 1, 1))
    for what, stats in (("running means", running_means), ("running variances", running_variances)):
        _check(reader, where, what, stats.shape, (1, channels, 1, 1))
    gamma, beta = _split_params(reader, where, params, channels, channels)
    scale = gamma / np.sqrt(running_variances.reshape(-1) + np.float32(eps))
    shift = beta - scale * running_means.reshape(-1)
    return Affine(scale.astype(np.float32), shift.astype(np.float32), from_batch_norm=True), params.size


def _read_affine(reader: Reader, kind: str, where: str) -> tuple[Layer, int]:
    params = reader.tensor()
    gamma_shape, beta_shape = reader.alias_tensor(), reader.alias_tensor()
    mode = reader.integer()
    disabled = reader.boolean() if kind == "affine_2" else False
    _check(reader, where, "mode", mode, _CONV_MODE)
    channels = gamma_shape[1]
    _check(reader, where, "beta view", beta_shape, gamma_shape)
    gamma, beta = _split_params(reader, where, params, channels, channels)
    if disabled:  # a disabled affine passes its input through
        gamma, beta = np.ones_like(gamma), np.zeros_like(beta)
    return Affine(gamma, beta, from_batch_norm=False), params.size


def _read_pool(reader: Reader, slot: Slot, where: str) -> Pool:
    window = (reader.integer(), reader.integer())
    stride = (reader.integer(), reader.integer())
    padding = (reader.integer(), reader.integer())
    _check(reader, where, "window", window, (slot.window, slot.window))
    _check(reader, where, "stride", stride, (slot.stride, slot.stride))
    _check(reader, where, "padding", padding, (slot.padding, slot.padding))
    kind: Literal["max", "avg"] = "max" if slot.kind == "max_pool" else "avg"
    return Pool(kind, window, stride, padding)


def _read_fc(reader: Reader, kind: str, slot: Slot, where: str) -> tuple[Layer, int]:
    outputs, inputs = reader.integer(), reader.integer()
    params = reader.tensor()
    weight_shape, bias_shape = reader.alias_tensor(), reader.alias_tensor()
    bias_mode = reader.integer()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.real()
    use_bias = (reader.boolean() if kind == "fc_3" else True) and bias_mode != _FC_NO_BIAS
    _check(reader, where, "outputs", outputs, slot.number)
    _check(reader, where, "bias mode", bias_mode, _FC_NO_BIAS)  # anet_type uses fc_no_bias
    _check(reader, where, "weight view", weight_shape, (inputs, outputs, 1, 1))
    # Without a bias dlib never sets up the bias view, so it is stored empty.
    _check(reader, where, "bias view", bias_shape, (1, outputs, 1, 1) if use_bias else (0, 0, 0, 0))
    sizes = (inputs * outputs, outputs if use_bias else 0)
    weights, bias = _split_params(reader, where, params, *sizes)
    fc = FullyConnected(weights.reshape(inputs, outputs), bias if use_bias else None)
    return fc, params.size
