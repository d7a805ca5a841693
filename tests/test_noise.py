"""The stderr filter (pipeline.noise): TensorFlow's known noise is dropped, every other line passes,
from the process and from the processes it starts, in order, progress bars' carriage returns kept."""

from __future__ import annotations

import subprocess
import sys

from pipeline.noise import KNOWN_NOISE
from tests.conftest import ROOT

TF_DATA_LINE = (
    "E0000 00:00:1796156628.778636    6010 node_def_util.cc:682] NodeDef mentions attribute "
    "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; signature="
    "input_dataset:variant, other_arguments: -> handle:variant; attr=f:func> This may be expected if "
    "your graph generating binary is newer  than this binary. Unknown attributes will be ignored. "
    "NodeDef: {{node ParallelMapDatasetV2/_14}}"
)

SCRIPT = f"""
import os, subprocess, sys
from pipeline.noise import stderr_filtered
noise = {TF_DATA_LINE!r}.encode()
with stderr_filtered():
    os.write(2, b"kept 1\\n" + noise + b"\\nprogress 50%\\rprogress 100%\\n")
    print("from python's sys.stderr", file=sys.stderr)
    child = "import os; os.write(2, " + repr(noise + b"\\n") + " + b'from a child\\\\n')"
    subprocess.run([sys.executable, "-c", child], check=True)
    os.write(2, b"W0000 00:00:1.0 1 node_def_util.cc:682] NodeDef mentions attribute other\\n")
os.write(2, b"after the block\\n")
"""


def test_known_noise_is_dropped_and_every_other_line_passes_in_order():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.decode() == (
        "kept 1\nprogress 50%\rprogress 100%\nfrom python's sys.stderr\nfrom a child\n"
        "W0000 00:00:1.0 1 node_def_util.cc:682] NodeDef mentions attribute other\nafter the block\n"
    )


def test_the_tf_data_line_is_noise_but_not_other_node_def_errors():
    assert KNOWN_NOISE.fullmatch(TF_DATA_LINE)
    assert not KNOWN_NOISE.fullmatch("E0000 00:00:1.0 1 node_def_util.cc:682] something else")
    assert not KNOWN_NOISE.fullmatch(TF_DATA_LINE.replace("use_unbounded_threadpool", "other_attr"))


RETRACING = (
    "WARNING:tensorflow:5 out of the last 12 calls to <function TensorFlowTrainer.make_predict_function."
    "<locals>.one_step_on_data_distributed at 0x7f579150f380> triggered tf.function retracing. Tracing is "
    "expensive and the excessive number of tracings could be due to (1) creating @tf.function "
    "repeatedly in a loop, (2) passing tensors with different shapes, (3) passing Python objects."
)


def test_kerass_predict_retracing_is_noise_but_not_other_functions_retracing():
    assert KNOWN_NOISE.fullmatch(RETRACING)
    assert not KNOWN_NOISE.fullmatch(RETRACING.replace("make_predict_function", "make_train_function"))
    assert not KNOWN_NOISE.fullmatch(
        RETRACING.replace("TensorFlowTrainer.make_predict_function.<locals>.", "")
    )


REMAPPER = (
    "E0000 00:00:1796211522.660783   16808 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: "
    "Mutation::Apply error: fanout 'StatefulPartitionedCall/gradient_tape/discriminator_5/conv1_leaky_1/"
    "LeakyRelu/LeakyReluGrad' exist for missing node "
    "'StatefulPartitionedCall/discriminator_5/conv1_1/BiasAdd'."
)
INT32 = (
    "E0000 00:00:1796211522.790149   16808 util.cc:131] oneDNN supports DT_INT32 only on platforms with "
    "AVX-512. Falling back to the default Eigen-based implementation if present."
)


def test_the_gan_stages_remapper_and_onednn_lines_are_noise_but_not_other_failures():
    assert KNOWN_NOISE.fullmatch(REMAPPER) and KNOWN_NOISE.fullmatch(INT32)
    assert not KNOWN_NOISE.fullmatch(REMAPPER.replace("LeakyReluGrad", "Conv2DBackpropInput"))
    assert not KNOWN_NOISE.fullmatch(REMAPPER.replace("remapper failed", "constant_folding failed"))
    assert not KNOWN_NOISE.fullmatch(INT32.replace("DT_INT32", "DT_FLOAT"))
