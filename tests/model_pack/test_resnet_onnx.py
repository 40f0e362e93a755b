"""The dlib ResNet -> ONNX conversion: parity with dlib on real face chips, contract, refusals."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
from pathlib import Path

import cv2
import dlib
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest

from safepassage.model_pack.errors import ModelFormatError, ModelSourceMissing
from safepassage.model_pack.resnet_onnx import (
    INPUT_NAME,
    OUTPUT_NAME,
    ResnetInfo,
    build_model,
    convert_resnet,
)
from safepassage.model_pack.resnet_parse import Slot, parse_face_resnet

logger = logging.getLogger(__name__)

RESNET = "dlib_face_recognition_resnet_model_v1.dat"
PARITY_ATOL = 1e-5
LFW_STEP = 28  # every 28th LFW identity: 30 faces, enough variety, a few seconds of dlib time
Chips = npt.NDArray[np.uint8]


@pytest.fixture(scope="module")
def models_dir() -> Path:
    # face_recognition_models itself imports pkg_resources: locate its folder without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        pytest.fail("face_recognition_models (the dlib weights) is not installed", pytrace=False)
    return Path(spec.origin).parent / "models"


@pytest.fixture(scope="module")
def converted(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ResnetInfo, Path]:
    onnx_path = tmp_path_factory.mktemp("resnet") / "face_resnet.onnx"
    return convert_resnet(models_dir / RESNET, onnx_path), onnx_path


@pytest.fixture(scope="module")
def session(converted: tuple[ResnetInfo, Path]) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(converted[1]), options, providers=["CPUExecutionProvider"])


def _face_images(faces_dir: Path) -> list[Path]:
    identities = sorted(p for p in (faces_dir / "lfw").iterdir() if p.is_dir())
    lfw = [sorted(folder.glob("*.jpg"))[0] for folder in identities[::LFW_STEP]]
    # Larger, differently shot photos: the first one of each face_recognition identity.
    others = [
        sorted(p for p in folder.iterdir() if p.is_file())[0]
        for folder in sorted((faces_dir / "face_recognition").iterdir())
        if folder.is_dir()
    ]
    return lfw + others


@pytest.fixture(scope="module")
def chips(faces_dir: Path, models_dir: Path) -> Chips:
    """150x150 RGB chips cut by dlib itself, the largest face of each image."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models_dir / "shape_predictor_5_face_landmarks.dat"))
    found = []
    for path in _face_images(faces_dir):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert bgr is not None, f"unreadable image {path}"
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        boxes = list(detector(image, 0 if image.shape[0] > 400 else 1))
        if not boxes:
            logger.info("no face found in %s", path)
            continue
        box = max(boxes, key=lambda b: b.area())
        found.append(dlib.get_face_chip(image, predictor(image, box), size=150, padding=0.25))
    assert len(found) >= 30, f"only {len(found)} faces found"
    return np.stack(found)


def _normalise(chips: Chips, info: ResnetInfo) -> npt.NDArray[np.float32]:
    """What the pipeline does from the manifest: (pixel - mean) * scale in float32, NHWC -> NCHW."""
    mean = np.array(info.mean_rgb, dtype=np.float32)
    normalised = (chips.astype(np.float32) - mean) * np.float32(info.scale)
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))


def _embed(session: ort.InferenceSession, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    result: npt.NDArray[np.float32] = session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
    return result


def test_matches_dlib_on_real_chips(
    chips: Chips, converted: tuple[ResnetInfo, Path], session: ort.InferenceSession, models_dir: Path
) -> None:
    recogniser = dlib.face_recognition_model_v1(str(models_dir / RESNET))
    reference = np.array([np.array(d) for d in recogniser.compute_face_descriptor(list(chips))])
    ours = _embed(session, _normalise(chips, converted[0]))
    difference = float(np.abs(ours.astype(np.float64) - reference).max())
    logger.info("%d faces: max abs difference to dlib %.3g", len(chips), difference)
    assert ours.shape == reference.shape == (len(chips), 128)
    assert difference <= PARITY_ATOL


def test_batch_equals_singles(
    chips: Chips, converted: tuple[ResnetInfo, Path], session: ort.InferenceSession
) -> None:
    batch = _normalise(chips[:8], converted[0])
    together = _embed(session, batch)
    alone = np.concatenate([_embed(session, batch[i : i + 1]) for i in range(len(batch))])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)


def test_model_contract(converted: tuple[ResnetInfo, Path]) -> None:
    info, path = converted
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)

    def dims(value: onnx.ValueInfoProto) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    (chips_input,) = model.graph.input
    (embeddings,) = model.graph.output
    assert chips_input.name == INPUT_NAME == "chips"
    assert embeddings.name == OUTPUT_NAME == "embeddings"
    assert dims(chips_input) == ["N", 3, 150, 150]
    assert dims(embeddings) == ["N", 128]
    float32 = onnx.TensorProto.FLOAT
    assert chips_input.type.tensor_type.elem_type == embeddings.type.tensor_type.elem_type == float32
    assert (info.input_size, info.output_dim, info.scale) == (150, 128, 1 / 256)
    assert info.mean_rgb == (122.782, 117.001, 104.298)
    assert (info.conv_layers, info.affine_layers, info.residual_adds, info.fc_layers) == (29, 29, 14, 1)
    assert info.distance_threshold == 0.6
    assert info.onnx_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_conversion_is_deterministic(
    converted: tuple[ResnetInfo, Path], models_dir: Path, tmp_path: Path
) -> None:
    again = convert_resnet(models_dir / RESNET, tmp_path / "again.onnx")
    assert again == converted[0]
    assert (tmp_path / "again.onnx").read_bytes() == converted[1].read_bytes()


def _damaged(models_dir: Path, tmp_path: Path, damage: str) -> Path:
    data = bytearray((models_dir / RESNET).read_bytes())
    if damage == "truncated-end":
        del data[-1]
    elif damage == "truncated-half":
        del data[len(data) // 2 :]
    elif damage == "trailing-byte":
        data.append(0)
    else:  # flip one byte of a structural record; weights carry no checksum to catch
        anchor, offset = {
            "loss-record": (b"loss_metric_2", 4),
            "input-record": (b"input_rgb_image_sized", 0),
            "layer-type": (b"add_prev_", 2),
            "tensor-version": (b"con_4", 6),  # the params tensor's version byte after "con_4"
        }[damage]
        data[data.index(anchor) + offset] ^= 0x01
    path = tmp_path / f"{damage}.dat"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "damage",
    [
        "truncated-end",
        "truncated-half",
        "trailing-byte",
        "loss-record",
        "input-record",
        "layer-type",
        "tensor-version",
    ],
)
def test_refuses_a_damaged_file(models_dir: Path, tmp_path: Path, damage: str) -> None:
    path = _damaged(models_dir, tmp_path, damage)
    with pytest.raises(ModelFormatError) as raised:
        convert_resnet(path, tmp_path / "out.onnx")
    assert str(path) in str(raised.value)
    logger.info("%s: %s", damage, raised.value)
    assert not (tmp_path / "out.onnx").exists()


def test_refuses_another_dlib_file(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="shape_predictor_5_face_landmarks"):
        convert_resnet(models_dir / "shape_predictor_5_face_landmarks.dat", tmp_path / "out.onnx")


def test_missing_file_is_a_missing_source(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceMissing, match=r"nowhere\.dat"):
        convert_resnet(tmp_path / "nowhere.dat", tmp_path / "out.onnx")


# ---------------------------------------------------------------- a tiny synthetic network
# The real file stores its normalisations as affine_ records; networks saved straight after
# training store bn_con2 instead. A hand-written file checks that path and the graph builder
# against a plain numpy forward pass.


def _int(value: int) -> bytes:
    magnitude = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(magnitude) | (0x80 if value < 0 else 0)]) + magnitude


def _real(value: float) -> bytes:
    mantissa, exponent = math.frexp(float(np.float32(value)))
    return _int(int(mantissa * 2**24)) + _int(exponent - 24)


def _string(text: str) -> bytes:
    return _int(len(text)) + text.encode()


def _tensor(array: npt.NDArray[np.float32], shape: tuple[int, ...] | None = None) -> bytes:
    n, k, rows, cols = shape or (*array.shape, 1, 1, 1)[:4]
    return _int(2) + b"".join(map(_int, (n, k, rows, cols))) + array.astype("<f4").tobytes()


def _alias(*shape: int) -> bytes:
    return _int(1) + b"".join(map(_int, shape))


EMPTY = _tensor(np.zeros(0, np.float32), (0, 0, 0, 0))
TRAINING_STATE = b"001" + EMPTY + EMPTY  # three bools, x_grad, cached_output
MULTIPLIERS = _real(1) * 4


def _tiny_network(rng: np.random.Generator) -> tuple[bytes, dict[str, npt.NDArray[np.float32]]]:
    """con 4x3x3 -> bn_con2 -> relu -> average over everything -> fc 4 -> 3 without bias, on 6x6."""
    w = {
        "filters": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "biases": rng.normal(size=4).astype(np.float32),
        "gamma": rng.uniform(0.5, 2, size=4).astype(np.float32),
        "beta": rng.normal(size=4).astype(np.float32),
        "means": rng.normal(size=4).astype(np.float32),
        "variances": rng.uniform(0.1, 3, size=4).astype(np.float32),
        "fc": rng.normal(size=(4, 3)).astype(np.float32),
    }
    one_k = (1, 4, 1, 1)
    conv = [
        _string("con_4"),
        _tensor(np.concatenate([w["filters"].ravel(), w["biases"]])),
        *map(_int, (4, 3, 3, 1, 1, 1, 1)),  # filters, rows, cols, strides, paddings
        _alias(4, 3, 3, 3),
        _alias(*one_k),
        MULTIPLIERS,
        TRAINING_STATE + EMPTY + _int(1),  # on the input: grad_final, sample_expansion_factor
    ]
    batch_norm = [
        _string("bn_con2"),
        _tensor(np.concatenate([w["gamma"], w["beta"]])),
        _alias(*one_k) * 2,
        _tensor(np.zeros(4, np.float32), one_k) * 2,  # last batch's means and invstds: unused
        _tensor(w["means"], one_k),
        _tensor(w["variances"], one_k),
        _int(7) + _int(100),  # num_updates, running_stats_window_size
        MULTIPLIERS + _real(1e-5),
        TRAINING_STATE + EMPTY,
    ]
    relu = [_string("relu_"), TRAINING_STATE + EMPTY]
    pool = [_string("avg_pool_2"), *map(_int, (0, 0, 1, 1, 0, 0)), TRAINING_STATE + EMPTY]
    fc = [
        _string("fc_2") + _int(3) + _int(4),
        _tensor(w["fc"].ravel()),
        _alias(4, 3, 1, 1) + _alias(0, 0, 0, 0) + _int(1),  # no bias
        MULTIPLIERS,
        TRAINING_STATE + EMPTY,
    ]
    head = [
        _int(1) + _string("loss_metric_2") + _real(0.04) + _real(0.6),
        _int(2) * 4 + _int(3),  # versions: fc, pool, relu, bn, then the conv on the input
        _string("input_rgb_image_sized"),
        _real(122.782) + _real(117.001) + _real(104.298) + _int(6) + _int(6),
    ]
    data = b"".join([*head, *conv, *batch_norm, *relu, *pool, *fc])
    return data, w


def _reference(x: npt.NDArray[np.float32], w: dict[str, npt.NDArray[np.float32]]) -> npt.NDArray[np.float64]:
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # n, c, y, x, 3, 3
    y = np.einsum("ncyxij,fcij->nfyx", windows, w["filters"]) + w["biases"][:, None, None]
    scale = w["gamma"] / np.sqrt(w["variances"].astype(np.float64) + 1e-5)
    y = (y - w["means"][:, None, None]) * scale[:, None, None] + w["beta"][:, None, None]
    pooled = np.maximum(y, 0).mean(axis=(2, 3))
    result: npt.NDArray[np.float64] = pooled @ w["fc"]
    return result


def test_batch_norm_records_and_builder_on_a_tiny_network(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    data, weights = _tiny_network(rng)
    source = tmp_path / "tiny.dat"
    source.write_bytes(data)
    slots = (Slot("con", 4, 3, 1), Slot("affine"), Slot("relu"), Slot("avg_pool", 0, 0, 1), Slot("fc", 3))
    network = parse_face_resnet(data, str(source), slots)
    assert network.parameter_count == 4 * 27 + 4 + 8 + 12
    model = build_model(network, source.name, "0" * 64)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    ours = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    np.testing.assert_allclose(ours, _reference(x, weights), rtol=0, atol=1e-5)
