"""`neurocompile convert` refuses a file that is no model to convert before torch or onnxruntime load, runs
each SNN once for all T, and shows a bar per stage on a terminal; `neurocompile.train` shows its epochs
(issue 26 item 6). The timings themselves: ``tools/bench_convert.py``."""

from __future__ import annotations

import io
import subprocess
import sys
import types

import numpy as np
import onnx
import pytest

import neurocompile
import neurocompile.api as api
import neurocompile.onnx.convert as onnx_convert
from neurocompile.analysis import metrics
from neurocompile.backends import create_backend
from neurocompile.compiler.calibrate import first_steps
from tests.onnx.test_onnx_sizes import tiny

# the convert command in-process; prints its exit code and the heavy libraries it loaded
REFUSED = """
import sys
from neurocompile.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    print(exc.code, [name for name in ("torch", "onnxruntime") if name in sys.modules])
"""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def holding(content: bytes | None):
    """A maker of ``model.onnx`` holding ``content`` (None: no such file)."""

    def make(tmp_path):
        path = tmp_path / "model.onnx"
        if content is not None:
            path.write_bytes(content)
        return path

    return make


def old_opset(tmp_path):
    path, _data = tiny(tmp_path)
    model = onnx.load(str(path))
    model.opset_import[0].version = 5
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (holding(b"junk\n"), "not an ONNX model"),
        (holding(b""), "empty file"),
        (holding(None), "no such file"),
        (old_opset, "opset 5 is too old"),
    ],
    ids=["junk", "empty", "missing", "old-opset"],
)
def test_a_file_that_is_no_model_to_convert_is_refused_before_torch_and_onnxruntime_load(tmp_path, make, words):
    model = make(tmp_path)
    command = [sys.executable, "-c", REFUSED, "convert", str(model), "-o", str(tmp_path / "out.nir")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "2 []", result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and words in line


def run(conversion, kind: str, program, x, steps: int):
    """One SNN run of ``kind`` over ``steps`` steps, as :func:`snn_predictions` runs it."""
    if kind == "cpu":
        backend = create_backend("cpu", program)
    else:
        backend = create_backend("float", conversion.graph, convention=onnx_convert.CONVENTION)
    encode = onnx_convert.analog_current if kind == "float" else onnx_convert.encode_spikes
    return backend.run(encode(x, steps, conversion.scales["input"]), record="all")


@pytest.mark.parametrize("kind", onnx_convert.KINDS)
def test_the_first_t_steps_of_a_longer_run_are_the_run_of_t_steps(tmp_path, kind):
    path, data = tiny(tmp_path, hidden=6, test=30)
    conversion = onnx_convert.convert(path, data)
    program = onnx_convert.compile_fixed_point(conversion, 9, samples=16)
    x = conversion.data.x_test
    longer = run(conversion, kind, program, x, 9)
    together = onnx_convert.snn_predictions(conversion, kind, [2, 5, 9], x, program)
    for t in (2, 5, 9):
        alone = run(conversion, kind, program, x, t)
        cut = first_steps(longer.arrays, t)
        assert cut.keys() == alone.arrays.keys()
        for key, value in alone.arrays.items():
            np.testing.assert_array_equal(cut[key], value, err_msg=key)
        np.testing.assert_array_equal(together[t], metrics.predictions(alone))


STAGES = ("calibrate", "fixed-point compile", "SNN float, T=8", "SNN float, spikes, T=8", "SNN cpu (fixed), T=8")


@pytest.mark.parametrize(("stream", "progress", "shown"), [(Terminal, True, True), (io.StringIO, True, False)])
def test_a_conversion_shows_a_bar_per_stage_on_a_terminal_not_in_a_pipe(tmp_path, monkeypatch, stream, progress, shown):
    path, data = tiny(tmp_path)
    monkeypatch.setattr(sys, "stderr", stream())
    conversion = onnx_convert.convert(path, data, progress=progress)
    onnx_convert.evaluate(conversion, steps=(4, 8), progress=progress)
    text = sys.stderr.getvalue()
    for stage in (*STAGES, "ANN (onnxruntime)"):
        assert (stage in text) == shown, (stage, text)


def test_a_conversion_shows_no_bar_unless_asked(tmp_path, monkeypatch):
    path, data = tiny(tmp_path)
    monkeypatch.setattr(sys, "stderr", Terminal())
    onnx_convert.evaluate(onnx_convert.convert(path, data), steps=(4,))
    assert sys.stderr.getvalue() == ""


@pytest.mark.parametrize(
    ("progress", "terminal", "notebook", "shown"),
    [
        (None, False, False, False),
        (None, True, False, True),
        (None, False, True, True),
        (True, False, False, True),
        (False, True, True, False),
    ],
)
def test_train_shows_its_bar_by_default_on_a_terminal_or_in_a_notebook(
    monkeypatch, progress, terminal, notebook, shown
):
    asked = []
    monkeypatch.setattr(api, "run_training", lambda config, progress: (asked.append(progress), {}))
    monkeypatch.setattr(sys, "stderr", Terminal() if terminal else io.StringIO())
    if notebook:
        monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    else:
        monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    neurocompile.train(epochs=1, progress=progress)
    assert asked == [shown]


def test_train_with_progress_draws_a_bar_per_epoch(capsys):
    neurocompile.train(epochs=2, hidden=(8,), steps=2, device="cpu", progress=True)
    bar = capsys.readouterr().err
    assert "2/2" in bar and "epoch" in bar and "test=" in bar
