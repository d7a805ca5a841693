"""What TensorFlow writes to stderr though nothing is wrong, and the filter that keeps it off the
terminal while passing on everything else as it comes.

TensorFlow's C++ code writes to file descriptor 2 directly, past Python's sys.stderr, so the filter
works on the descriptor: inside `stderr_filtered()`, descriptor 2 is a pipe, and a thread passes each
line on to the real stderr unless KNOWN_NOISE matches it. Lines end at '\\n' or '\\r' (progress bars
redraw with '\\r'), so progress shows at once. Processes started inside (augmentation workers) write
into the same pipe.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

# The lines, on every machine: absl's banner before its logging is set up, notices about oneDNN, the
# CPU instructions the build uses and a missing CUDA driver; from the GPU build on a machine without a
# GPU driver, cuInit's failure with error 303 (no libcuda: CPU it is); and during fits, TensorFlow
# 2.21's tf.data graph rewrite (under op determinism a ParallelMapDatasetV2 becomes a MapDataset that
# keeps the newer `use_unbounded_threadpool` attribute, which MapDataset's definition lacks: the
# attribute is ignored, as the line itself says); and TensorFlow's retracing warning about Keras's
# predict step: every model traces its own predict graph once per input shape, but TensorFlow counts
# the traces of that one Python function across models, so a stage predicting with a dozen small
# models (the lecture: learning curve, symmetries) is told to stop retracing what it traces once. On
# some CPUs (a 2-core Xeon, not the AVX-512 EPYC) the GAN stages add two more: grappler's remapper, an
# optional graph rewrite that fuses a conv, its bias and activation, declines the discriminators'
# LeakyReLU gradient (the graph then runs unfused, as the meta-optimizer rolls that pass back), and
# oneDNN says it leaves int32 ops to Eigen. Any other line, an error or a warning (a retracing warning
# about any other function, a remapper failure on another op), still shows.
KNOWN_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on\..*"
    r"|[IW]\d{4} [\d:. ]+\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized .*"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
    r"|[IW]\d{4} [\d:. ]+\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, "
    r"GPU will not be used\."
    r"|E\d{4} [\d:. ]+\d+ cuda_(?:platform|executor|diagnostics)\.cc:\d+\] failed call to cuInit: "
    r".*UNKNOWN ERROR \(303\)"
    r"|E\d{4} [\d:. ]+\d+ node_def_util\.cc:\d+\] NodeDef mentions attribute use_unbounded_threadpool "
    r"which is not in the op definition: Op<name=MapDataset; .* "
    r"NodeDef: \{\{node ParallelMapDatasetV2[^}]*\}\}"
    r"|WARNING:tensorflow:\d+ out of the last \d+ calls to <function TensorFlowTrainer\.make_predict_function"
    r"\.<locals>\.one_step_on_data_distributed at 0x[0-9a-f]+> triggered tf\.function retracing\. .*"
    r"|E\d{4} [\d:. ]+\d+ meta_optimizer\.cc:\d+\] remapper failed: INVALID_ARGUMENT: Mutation::Apply "
    r"error: fanout '[^']*/gradient_tape/[^']*/LeakyRelu/LeakyReluGrad' exist for missing node "
    r"'[^']*/BiasAdd'\."
    r"|E\d{4} [\d:. ]+\d+ util\.cc:\d+\] oneDNN supports DT_INT32 only on platforms with AVX-512\. "
    r"Falling back to the default Eigen-based implementation if present\."
)
_LINE_END = re.compile(rb"(?<=[\r\n])")
# Written into the pipe when the block ends: whatever the process wrote before is then passed on.
_END = b"\0convpipe: end of the filtered block\0"


_open = threading.local()  # a block is open in this thread: one inside it (runtime.setup's, in a
# stage that run_cli already filters) would only add a second pipe and pump


@contextlib.contextmanager
def stderr_filtered() -> Iterator[None]:
    """File descriptor 2 through the filter for the block (see the module's docstring)."""
    if getattr(_open, "block", False):
        yield
        return
    _open.block = True
    try:
        with _filtered():
            yield
    finally:
        _open.block = False


@contextlib.contextmanager
def _filtered() -> Iterator[None]:
    sys.stderr.flush()
    real = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    passed = threading.Event()
    pump = threading.Thread(target=_pass_on, args=(read, real, passed), name="stderr-filter", daemon=True)
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)
        os.write(write, _END)
        os.close(write)
        # Not the pipe's end: a process started inside (an augmentation workers' forkserver) may hold
        # it open for as long as this process lives; the pump passes on its lines meanwhile.
        passed.wait(timeout=10)
        if not pump.is_alive():
            os.close(real)


def _pass_on(read: int, out: int, passed: threading.Event) -> None:
    pending = b""
    while chunk := os.read(read, 1 << 16):
        pending += chunk
        if _END in pending:
            before, _, pending = pending.partition(_END)
            _write(out, _LINE_END.split(before))  # a last line without its end too
            passed.set()
        *lines, pending = _LINE_END.split(pending)
        _write(out, lines)
    _write(out, [pending])
    os.close(read)


def _write(fd: int, lines: list[bytes]) -> None:
    data = b"".join(
        line
        for line in lines
        if line and not KNOWN_NOISE.fullmatch(line.rstrip(b"\r\n").decode(errors="replace"))
    )
    while data:
        data = data[os.write(fd, data) :]
