"""Offline ImageNet weights: the safe torch-pickle reader, the layer-by-layer conversion, the photo test."""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from pipeline.errors import UserError
from pipeline.models import weights_import
from pipeline.models.efficientnet_lite import efficientnet_lite0, keras_name
from pipeline.models.weights_import import UnsafePickleError, read_torch_state_dict
from pipeline.tools import imagenet_predict


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return read_torch_state_dict(weights_import.packaged_lite0_file())


@pytest.fixture(scope="module")
def imported():
    return weights_import.import_efficientnet_lite0()


# ---------------------------------------------------------------- the packaged checkpoint


def test_packaged_checkpoint_is_efficientnet_lite0(state):
    blocks = {k.split(".")[1] for k in state if k.startswith("_blocks.")}
    assert len(blocks) == 16
    assert not any("_se_" in k for k in state)  # Lite: no squeeze-excitation
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.running_var"].dtype == np.float32
    assert state["_bn0.num_batches_tracked"].dtype == np.int64


def test_every_layer_gets_its_tensor_in_keras_layout(state):
    """Layer by layer: each torch module lands on the Keras layer of that name, transposed right."""
    model = efficientnet_lite0((64, 64, 3))
    converted = weights_import.efficientnet_lite0_keras_weights(state)
    weighted = {layer.name for layer in model.layers if layer.weights}
    assert set(converted) == weighted
    for name, arrays in converted.items():
        layer = model.get_layer(name)
        assert [tuple(w.shape) for w in layer.weights] == [a.shape for a in arrays], name
    # Spot checks of the layouts: OIHW -> HWIO, depthwise (C,1,H,W) -> (H,W,C,1), dense transposed.
    w = state["_blocks.3._expand_conv.weight"]
    np.testing.assert_array_equal(converted["blocks_3_expand_conv"][0][0, 0], w[:, :, 0, 0].T)
    dw = state["_blocks.3._depthwise_conv.weight"]
    assert converted["blocks_3_depthwise_conv"][0].shape == (5, 5, 144, 1)
    np.testing.assert_array_equal(converted["blocks_3_depthwise_conv"][0][1, 2, 7, 0], dw[7, 0, 1, 2])
    stem = state["_conv_stem.weight"]
    np.testing.assert_array_equal(converted["conv_stem"][0][2, 1, 0, 5], stem[5, 0, 2, 1])
    np.testing.assert_array_equal(converted["fc"][0], state["_fc.weight"].T)
    bn = converted["blocks_15_bn2"]  # Keras order: gamma, beta, moving mean, moving variance
    for got, key in zip(bn, ("weight", "bias", "running_mean", "running_var"), strict=True):
        np.testing.assert_array_equal(got, state[f"_blocks.15._bn2.{key}"])
    assert keras_name("_blocks.15._bn2") == "blocks_15_bn2"


def test_imported_model_has_lite0_size(imported):
    assert imported.count_params() == 4_694_024  # 4.69M, as the original


def test_photo_test_cat_and_coffee(imported):
    """The import is exact: scikit-image's cat is a cat (281-285), its coffee espresso or cup."""
    report = imagenet_predict.photo_check(imported)
    assert set(report["chelsea"]["top5"]) & set(range(281, 286))
    assert set(report["coffee"]["top5"]) & {967, 968}
    assert report["chelsea"]["top5"][0] == 285  # Egyptian cat
    assert report["coffee"]["top5"][0] == 967  # espresso


def test_saved_weights_file_round_trips(imported, tmp_path):
    """What import_weights writes is what predict and the transfer backbone load."""
    path = tmp_path / weights_import.LITE0_WEIGHTS_FILE
    imported.save_weights(path)
    model = imagenet_predict.load_model(path)
    np.testing.assert_array_equal(
        model.get_layer("fc").get_weights()[0], imported.get_layer("fc").get_weights()[0]
    )
    with pytest.raises(UserError, match="file not found"):
        imagenet_predict.load_model(tmp_path / "missing.weights.h5")


# ---------------------------------------------------------------- the safe unpickler


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_naming_another_global_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(collections.OrderedDict(w=Evil()), protocol=2))
    with pytest.raises(UnsafePickleError, match=r"refused to unpickle global (posix|os|nt)\.system"):
        read_torch_state_dict(path)


def test_refusal_happens_before_anything_runs(tmp_path):
    """A global outside the allow-list is never imported or called, even inside a zip checkpoint."""
    marker = tmp_path / "ran"
    payload = pickle.dumps({"w": _Touch(str(marker))}, protocol=2)
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
    with pytest.raises(UnsafePickleError, match=r"(__builtin__|builtins)\.exec"):
        read_torch_state_dict(path)
    assert not marker.exists()


class _Touch:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').close()",))


def test_zip_layout_is_read(tmp_path):
    """torch >= 1.6 writes a zip: data.pkl plus one raw file per storage."""
    payload = _torch_like_pickle({"w": ("0", "FloatStorage", 6, (2, 3), (3, 1))})
    path = tmp_path / "new.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/data/0", np.arange(6, dtype="<f4").tobytes())
    state = read_torch_state_dict(path)
    np.testing.assert_array_equal(state["w"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_legacy_layout_with_strided_tensor(tmp_path):
    """Legacy layout: magic, protocol, sys info, the pickle, storage keys, then count + raw bytes."""
    payload = _torch_like_pickle({"t": ("k", "LongStorage", 6, (3, 2), (1, 3))})  # a transposed view
    path = tmp_path / "old.pth"
    with open(path, "wb") as f:
        for header in (weights_import.LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(payload)
        pickle.dump(["k"], f, protocol=2)
        f.write(struct.pack("<q", 6) + np.arange(6, dtype="<i8").tobytes())
    state = read_torch_state_dict(path)
    np.testing.assert_array_equal(state["t"], np.arange(6).reshape(2, 3).T)


def test_truncated_or_foreign_files_are_one_clear_error(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"junk\.pth"):
        read_torch_state_dict(path)
    with pytest.raises(UserError, match="not found"):
        read_torch_state_dict(tmp_path / "absent.pth")


def _torch_like_pickle(tensors: dict[str, tuple]) -> bytes:
    """A pickle as torch.save writes it (protocol 2), opcode by opcode: torch is not installed, so
    its globals cannot be pickled from real objects."""
    out = io.BytesIO()
    out.write(b"\x80\x02")  # PROTO 2
    out.write(b"ccollections\nOrderedDict\n)R")  # OrderedDict()
    for name, (key, storage, numel, size, stride) in tensors.items():
        out.write(b"X" + struct.pack("<I", len(name)) + name.encode())
        out.write(b"ctorch._utils\n_rebuild_tensor_v2\n(")  # function, MARK for its arguments
        # persistent id ('storage', torch.<Storage>, key, 'cpu', numel)
        out.write(b"(X\x07\x00\x00\x00storage")
        out.write(f"ctorch\n{storage}\n".encode())
        out.write(b"X" + struct.pack("<I", len(key)) + key.encode() + b"X\x03\x00\x00\x00cpu")
        out.write(b"J" + struct.pack("<i", numel) + b"tQ")  # TUPLE, BINPERSID
        out.write(b"K\x00")  # storage offset 0
        out.write(b"(" + b"".join(b"K" + bytes([n]) for n in size) + b"t")
        out.write(b"(" + b"".join(b"K" + bytes([n]) for n in stride) + b"t")
        out.write(b"\x89ccollections\nOrderedDict\n)RtR")  # requires_grad, hooks; TUPLE; REDUCE
        out.write(b"s")  # SETITEM
    out.write(b".")
    return out.getvalue()


def test_class_names_from_a_file(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"class {i}" for i in range(1000)))
    assert imagenet_predict.class_names(names)[285] == "class 285"
    index = tmp_path / "imagenet_class_index.json"  # Keras's layout
    index.write_text(json.dumps({str(i): [f"n{i:08d}", f"name_{i}"] for i in range(1000)}))
    assert imagenet_predict.class_names(index)[967] == "name_967"
    names.write_text("tench\ngoldfish\n")
    with pytest.raises(UserError, match="2 class names, expected 1000"):
        imagenet_predict.class_names(names)
