"""Event data through tonic (``neurocompile/events.py``): event ``.npz`` files and tonic's N-MNIST and DVS-Gesture
folders, written here in tonic's on-disk formats, binned to spikes.

Oracles: frames counted by hand for a hand-written event list; tonic's own ``Downsample``, ``ToFrame`` and
``ToImage`` applied here to the events the test wrote (the N-MNIST ``.bin`` files are encoded here, decoded by
tonic); the CPU backend run here on those oracle spikes, against what ``simulate`` and ``learn`` report; for
``convert``, the input scale is the largest count tonic gives and the hidden scale is counted by hand. Nothing is
downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tonic

from neurocompile import api
from neurocompile.backends import create_backend
from neurocompile.data import load_dataset, load_event_images
from neurocompile.errors import NeurocompileError
from neurocompile.ir.program import FixedPointProgram
from tests.cli.test_cli_float import assert_one_line_error, run_cli
from tests.onnx.test_onnx_convert import tiny_dense_model

DTYPE = tonic.datasets.NMNIST.dtype  # x, y, t, p as int64
NMNIST = (34, 34, 2)
GESTURE = (128, 128, 2)
T = 8
SHIPPED = Path(__file__).resolve().parents[2] / "models" / "digits_mlp.pt"


def events(rows) -> np.ndarray:
    """A structured event array from ``(x, y, t, p)`` rows."""
    return np.array([tuple(r) for r in rows], dtype=DTYPE)


def recording(rng, label: int, sensor=NMNIST, n: int = 1500, span: int = 300_000) -> np.ndarray:
    """Events of one class: label 0 on the left half of the sensor, label 1 on the right half."""
    half = sensor[0] // 2
    ev = np.zeros(n, dtype=DTYPE)
    ev["x"] = rng.integers(0, half, n) + half * label
    ev["y"] = rng.integers(0, sensor[1], n)
    ev["t"] = np.sort(rng.integers(0, span, n))
    ev["p"] = rng.integers(0, sensor[2], n)
    return ev


def recordings(seed: int, per_class: int, sensor=NMNIST, **kw) -> list[tuple[np.ndarray, int]]:
    """``per_class`` recordings of labels 0 and 1, label 0 first (the order tonic's N-MNIST lists them in)."""
    rng = np.random.default_rng(seed)
    return [(recording(rng, label, sensor, **kw), label) for label in (0, 1) for _ in range(per_class)]


def npz_arrays(recs, suffix: str = "") -> dict[str, np.ndarray]:
    return {
        f"events{suffix}": np.concatenate([ev for ev, _ in recs]),
        f"offsets{suffix}": np.cumsum([0] + [len(ev) for ev, _ in recs]),
        f"y{suffix}": np.array([label for _, label in recs]),
    }


def write_npz(path, sensor, **splits) -> str:
    """The event .npz of docs/training.md: ``whole=recs`` or ``train=recs, test=recs``."""
    arrays = {"sensor_size": np.array(sensor)}
    for split, recs in splits.items():
        arrays.update(npz_arrays(recs, "" if split == "whole" else f"_{split}"))
    np.savez(path, **arrays)
    return str(path)


def write_nmnist(root, folder: str, recs) -> None:
    """N-MNIST's binary format, 5 bytes an event (x, y, p<<7 | t[22:16], t[15:8], t[7:0]), in tonic's layout
    ``root/NMNIST/<Train|Test>/<label>/<n>.bin``."""
    for n, (ev, label) in enumerate(recs):
        raw = np.zeros((len(ev), 5), dtype=np.uint8)
        raw[:, 0], raw[:, 1] = ev["x"], ev["y"]
        raw[:, 2] = (ev["p"] << 7) | ((ev["t"] >> 16) & 127)
        raw[:, 3], raw[:, 4] = (ev["t"] >> 8) & 255, ev["t"] & 255
        folder_path = root / "NMNIST" / folder / str(label)
        folder_path.mkdir(parents=True, exist_ok=True)
        raw.tofile(folder_path / f"{n:05d}.bin")


def write_gesture(root, folder: str, recs) -> None:
    """DVS-Gesture as tonic stores it: ``root/DVSGesture/<folder>/user01_led/<label>.npy``, columns x, y, p and
    t in milliseconds (tonic multiplies by 1000)."""
    path = root / "DVSGesture" / folder / "user01_led"
    path.mkdir(parents=True)
    for ev, label in recs:
        np.save(path / f"{label}.npy", np.stack([ev["x"], ev["y"], ev["p"], ev["t"] // 1000], axis=1))


def tonic_spikes(recs, frame_sensor, steps: int, downsample: int = 1) -> np.ndarray:
    """The oracle: tonic's Downsample and ToFrame applied here, a spike where a bin counted an event."""
    to_frame = tonic.transforms.ToFrame(sensor_size=frame_sensor, n_time_bins=steps)
    scale = tonic.transforms.Downsample(spatial_factor=1 / downsample)
    return np.stack([to_frame(scale(ev.copy())) > 0 for ev, _ in recs]).astype(np.float32)


def predictions(program_path, x: np.ndarray) -> list[int]:
    """The program run on the CPU backend with its output latency's silent steps after the input, as simulate runs it."""
    program = FixedPointProgram.load(program_path)
    silent = np.zeros((len(x), program.output_latency(), *x.shape[2:]), x.dtype)
    counts = create_backend("cpu", program).run(np.concatenate([x, silent], axis=1)).output_spikes().sum(axis=1)
    return counts.argmax(axis=-1).tolist()


# --- binning ---------------------------------------------------------------------------------------------------


HAND = events([(0, 0, 0, 0), (0, 0, 10, 0), (3, 2, 25, 1), (1, 1, 74, 0), (2, 0, 75, 1), (2, 1, 100, 0)])


def hand_frames() -> np.ndarray:
    """HAND on a 4x3x2 sensor in 4 bins of (100 - 0) // 4 = 25: [0, 25), [25, 50), [50, 75), [75, 100); the event
    at t=100 falls after the last bin; two events at one pixel and bin are one spike."""
    frames = np.zeros((4, 2, 3, 4), dtype=np.float32)  # [T, P, H, W]
    frames[0, 0, 0, 0] = 1  # t=0 and t=10
    frames[1, 1, 2, 3] = 1  # t=25
    frames[2, 0, 1, 1] = 1  # t=74
    frames[3, 1, 0, 2] = 1  # t=75
    return frames


def test_hand_written_events_bin_as_counted_by_hand(tmp_path):
    other = events([(1, 2, 0, 1), (1, 2, 99, 1)])  # bins of 99 // 4 = 24: t=99 is past [72, 96)
    path = write_npz(tmp_path / "hand.npz", (4, 3, 2), whole=[(HAND, 3), (other, 5)])
    x, y = load_dataset(path, 4, split="all")
    expected_other = np.zeros((4, 2, 3, 4), dtype=np.float32)
    expected_other[0, 1, 2, 1] = 1
    np.testing.assert_array_equal(x, np.stack([hand_frames(), expected_other]))
    assert x.dtype == np.float32 and y.tolist() == [3, 5] and y.dtype == np.int64


def test_downsampling_by_hand(tmp_path):
    path = write_npz(tmp_path / "hand.npz", (4, 3, 2), whole=[(HAND, 0), (HAND, 1)])
    x, _ = load_dataset(path + "?downsample=2", 4, split="all")
    expected = np.zeros((4, 2, 2, 2), dtype=np.float32)  # 4x3 -> 2x2: x 0,3,1,2 -> 0,1,0,1; y 0,2,1,0 -> 0,1,0,0
    expected[0, 0, 0, 0] = 1
    expected[1, 1, 1, 1] = 1
    expected[2, 0, 0, 0] = 1
    expected[3, 1, 0, 1] = 1
    np.testing.assert_array_equal(x[0], expected)


@pytest.mark.parametrize("downsample, frame_sensor", [(1, NMNIST), (2, (17, 17, 2)), (3, (12, 12, 2))])
def test_event_npz_equals_tonic_toframe(tmp_path, downsample, frame_sensor):
    recs = recordings(1, 3)
    path = write_npz(tmp_path / "ev.npz", NMNIST, whole=recs)
    x, y = load_dataset(f"{path}?downsample={downsample}", T, split="all")
    np.testing.assert_array_equal(x, tonic_spikes(recs, frame_sensor, T, downsample))
    assert y.tolist() == [0, 0, 0, 1, 1, 1]


def test_tonic_nmnist_folder_equals_tonic_toframe_and_the_npz(tmp_path):
    train, test = recordings(2, 3), recordings(3, 2)
    write_nmnist(tmp_path, "Train", train)
    write_nmnist(tmp_path, "Test", test)
    npz = write_npz(tmp_path / "ev.npz", NMNIST, train=train, test=test)
    for split, recs in (("train", train), ("test", test)):
        x, y = load_dataset(f"tonic:NMNIST:{tmp_path}", T, split=split)
        np.testing.assert_array_equal(x, tonic_spikes(recs, NMNIST, T))
        assert y.tolist() == [label for _, label in recs]
        x_npz, y_npz = load_dataset(npz, T, split=split)
        np.testing.assert_array_equal(x_npz, x)
        np.testing.assert_array_equal(y_npz, y)


def test_tonic_dvsgesture_folder_downsampled(tmp_path):
    recs = [(recording(np.random.default_rng(label), label % 2, GESTURE, 3000, 2_000_000), label) for label in (0, 4)]
    for ev, _ in recs:
        ev["t"] -= ev["t"] % 1000  # whole milliseconds, as tonic's DVS-Gesture files hold them
    write_gesture(tmp_path, "ibmGestureTest", recs)
    x, y = load_dataset(f"tonic:DVSGesture:{tmp_path}?downsample=4", T, split="test")
    order = np.argsort(y)  # tonic lists a folder's files in the file system's order
    assert y[order].tolist() == [0, 4] and x.shape == (2, T, 2, 32, 32)
    np.testing.assert_array_equal(x[order], tonic_spikes(recs, (32, 32, 2), T, 4))


def test_event_images_are_tonic_toimage_counts(tmp_path):
    recs = recordings(4, 2, n=300)
    path = write_npz(tmp_path / "ev.npz", NMNIST, train=recs, test=recs[:1])
    images, y = load_event_images(path, "train")
    expected = np.stack([tonic.transforms.ToImage(sensor_size=NMNIST)(ev) for ev, _ in recs])
    np.testing.assert_array_equal(images, expected)
    assert images.shape == (4, 2, 34, 34) and images.sum() == 4 * 300 and y.tolist() == [0, 0, 1, 1]


# --- refusals ------------------------------------------------------------------------------------------------


def _with(arrays: dict, **changes) -> dict:
    return {k: v for k, v in {**arrays, **changes}.items() if v is not None}


def _retyped(ev: np.ndarray, field: str, dtype) -> np.ndarray:
    fields = [(name, dtype if name == field else ev.dtype[name]) for name in ev.dtype.names]
    out = np.zeros(len(ev), dtype=fields)
    for name in ev.dtype.names:
        out[name] = ev[name]
    return out


def _bad_files():
    """``(name, arrays, words in the error)`` for event .npz files that must be refused."""
    recs = recordings(5, 2, n=50)
    good = {**npz_arrays(recs), "sensor_size": np.array(NMNIST)}
    ev = good["events"]
    shifted = ev.copy()
    shifted["x"][60] = 34
    negative_y = ev.copy()
    negative_y["y"][3] = -1
    unsorted = ev.copy()
    unsorted["t"][10] = unsorted["t"][11] + 1
    negative_t = ev.copy()
    negative_t["t"][0] = -5
    polarity = ev.copy()
    polarity["p"][7] = 2
    short = ev.copy()
    short["t"][:50] = np.arange(50) // 10  # spans 4 time units, fewer than T=8 bins
    return [
        ("no offsets", _with(good, offsets=None), ["needs keys events, offsets and y"]),
        ("no sensor", _with(good, sensor_size=None), ["sensor_size"]),
        ("no p field", _with(good, events=np.zeros(200, [("x", int), ("y", int), ("t", int)])), ["x, y, t, p"]),
        ("plain array", _with(good, events=np.zeros((200, 4), int)), ["field 'events'", "structured"]),
        ("float t", _with(good, events=_retyped(ev, "t", np.float64)), ["field 't'", "integers"]),
        ("x outside", _with(good, events=shifted), ["recording 1", "field 'x'", "outside [0, 34)"]),
        ("negative y", _with(good, events=negative_y), ["recording 0", "field 'y'", "-1"]),
        ("p outside", _with(good, events=polarity), ["field 'p'", "outside [0, 2)"]),
        ("unsorted t", _with(good, events=unsorted), ["recording 0", "time order"]),
        ("negative t", _with(good, events=negative_t), ["field 't'", "-5"]),
        ("short span", _with(good, events=short), ["recording 0", "span 4", "8 bins"]),
        ("offsets short", _with(good, offsets=np.array([0, 50, 150])), ["field 'offsets'", "from 0 to 200"]),
        ("empty recording", _with(good, offsets=np.array([0, 50, 50, 200])), ["recording 1 has no events"]),
        ("offsets float", _with(good, offsets=np.array([0.0, 200.0])), ["field 'offsets'", "integer"]),
        ("labels short", _with(good, y=np.array([0, 1, 1])), ["field 'y'", "4 samples"]),
        ("labels float", _with(good, y=np.array([0.0, 1, 0, 1])), ["field 'y'", "integers"]),
        ("sensor 2d", _with(good, sensor_size=np.array([34, 34])), ["field 'sensor_size'", "(W, H, P)"]),
        ("sensor zero", _with(good, sensor_size=np.array([34, 0, 2])), ["field 'sensor_size'", "[34, 0, 2]"]),
        ("huge sensor", _with(good, sensor_size=np.array([10**6, 10**6, 2])), ["GiB"]),
    ]


@pytest.mark.parametrize("name, arrays, words", _bad_files(), ids=[case[0] for case in _bad_files()])
def test_bad_event_files_are_one_line_errors(tmp_path, name, arrays, words):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(NeurocompileError) as info:
        load_dataset(str(path), T, split="all")
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    "suffix, words",
    [("?downsample=0", "downsample must be a positive integer, got '0'"), ("?bins=4", "unknown option 'bins'")],
)
def test_bad_options(tmp_path, suffix, words):
    path = write_npz(tmp_path / "ev.npz", NMNIST, whole=recordings(6, 2, n=50))
    with pytest.raises(NeurocompileError, match=words):
        load_dataset(path + suffix, T, split="all")


def test_tonic_sources_never_download(tmp_path, monkeypatch):
    def no_network(*_args, **_kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(tonic.dataset.Dataset, "download", no_network)
    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", no_network)
    cases = [
        (f"tonic:NMNIST:{tmp_path}", "no NMNIST recordings under"),
        (f"tonic:DVSGesture:{tmp_path}", "no DVSGesture recordings under"),
        (f"tonic:NMNIST:{tmp_path / 'missing'}", "no such folder"),
        (f"tonic:CIFAR10DVS:{tmp_path}", "not read here"),
        ("tonic:NMNIST", "expected tonic:NAME:ROOT"),
    ]
    for name, words in cases:
        with pytest.raises(NeurocompileError, match=words):
            load_dataset(name, T, split="train")


def test_malformed_tonic_files(tmp_path):
    write_nmnist(tmp_path, "Test", [(events([(40, 0, 5, 0), (1, 1, 90, 1)]), 3)])
    with pytest.raises(NeurocompileError, match=r"00000\.bin': field 'x' holds 1\.\.40, outside \[0, 34\)"):
        load_dataset(f"tonic:NMNIST:{tmp_path}", T, split="test")
    (tmp_path / "NMNIST" / "Test" / "3" / "00000.bin").write_bytes(b"\x01\x02")  # no whole event
    with pytest.raises(NeurocompileError, match=r"00000\.bin': tonic cannot read it \(IndexError"):
        load_dataset(f"tonic:NMNIST:{tmp_path}", T, split="test")
    (tmp_path / "NMNIST" / "Test" / "three").mkdir()  # tonic takes a folder's last character as its label
    (tmp_path / "NMNIST" / "Test" / "three" / "00000.bin").write_bytes(b"")
    with pytest.raises(NeurocompileError, match="tonic cannot list it .ValueError"):
        load_dataset(f"tonic:NMNIST:{tmp_path}", T, split="test")


def test_limit_reads_only_the_first_recordings(tmp_path):
    recs = recordings(11, 2)
    write_nmnist(tmp_path, "Test", recs)
    (tmp_path / "NMNIST" / "Test" / "1" / "00003.bin").write_bytes(b"\x01\x02")  # the last recording is malformed
    x, y = load_dataset(f"tonic:NMNIST:{tmp_path}", T, split="test", limit=3)
    np.testing.assert_array_equal(x, tonic_spikes(recs[:3], NMNIST, T))
    assert y.tolist() == [0, 0, 1]
    with pytest.raises(NeurocompileError, match="00003.bin"):
        load_dataset(f"tonic:NMNIST:{tmp_path}", T, split="test")


# --- the commands ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nmnist(tmp_path_factory):
    """A small N-MNIST-shaped dataset twice: tonic's NMNIST folders and the event .npz, the same recordings."""
    root = tmp_path_factory.mktemp("nmnist")
    train, test = recordings(7, 8), recordings(8, 3)
    write_nmnist(root, "Train", train)
    write_nmnist(root, "Test", test)
    npz = write_npz(root / "nmnist.npz", NMNIST, train=train, test=test)
    return {"tonic": f"tonic:NMNIST:{root}", "npz": npz, "test": test, "root": root}


@pytest.mark.parametrize("source", ["tonic", "npz"])
def test_nmnist_trains_compiles_simulates_and_learns(capsys, tmp_path, nmnist, source):
    data, steps = nmnist[source], ["--steps", T]
    pt, graph, program, learned = (tmp_path / name for name in ("m.pt", "m.nir", "m.ncp", "learned.ncp"))
    code, out, err = run_cli(capsys, "train", "--data", data, *steps, "--epochs", 3, "--hidden", 16, "--json", "-o", pt)
    assert code == 0, err
    metrics = json.loads(out)
    assert (metrics["n_train"], metrics["n_test"], metrics["sizes"][0]) == (16, 6, 2 * 34 * 34)
    assert metrics["test_acc"] > 0.8  # the classes sit on the two halves of the sensor
    assert run_cli(capsys, "export", pt, "-o", graph)[0] == 0
    code, out, err = run_cli(capsys, "compile", graph, "--calibrate", data, *steps, "--json", "-o", program)
    assert code == 0, err
    assert json.loads(out)["report"]["calibration"] == f"16 samples x {T} steps"
    x_test = tonic_spikes(nmnist["test"], NMNIST, T)
    y_test = [label for _, label in nmnist["test"]]
    code, out, err = run_cli(capsys, "simulate", program, "--backend", "cpu", "--data", data, *steps, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["predictions"] == predictions(program, x_test)
    assert summary["accuracy"] == pytest.approx(np.mean(np.array(summary["predictions"]) == y_test))
    code, out, err = run_cli(
        capsys, "learn", program, "--rule", "ottt", "--data", data, *steps, "--json", "-o", learned
    )
    assert code == 0, err
    result = json.loads(out)
    assert (result["train_samples"], result["test_samples"], result["steps"]) == (16, 6, T)
    assert result["accuracy_after"] == pytest.approx(np.mean(np.array(predictions(learned, x_test)) == y_test))


def test_dvsgesture_shaped_file_simulates_on_cpu_downsampled(capsys, tmp_path):
    recs = recordings(9, 3, GESTURE, n=3000, span=2_000_000)
    data = write_npz(tmp_path / "gesture.npz", GESTURE, train=recs, test=recs[1:5]) + "?downsample=4"
    pt, graph, program = tmp_path / "g.pt", tmp_path / "g.nir", tmp_path / "g.ncp"
    code, _, err = run_cli(capsys, "train", "--data", data, "--steps", T, "--epochs", 1, "--hidden", 8, "-o", pt)
    assert code == 0, err
    assert run_cli(capsys, "export", pt, "-o", graph)[0] == 0
    assert run_cli(capsys, "compile", graph, "--calibrate", data, "--steps", T, "-o", program)[0] == 0
    argv = ["simulate", program, "--backend", "cpu", "--data", data, "--steps", T, "--limit", 3, "--json"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["samples"], summary["steps"]) == (3, T)
    assert summary["predictions"] == predictions(program, tonic_spikes(recs[1:4], (32, 32, 2), T, 4))


def half_sensor_onnx(path) -> None:
    """An ONNX ReLU network on N-MNIST images: hidden unit 0 sums the left half of the sensor, unit 1 the right
    half, and the readout copies them (so the ANN classifies the test's recordings exactly)."""
    left = np.zeros(NMNIST[::-1], dtype=np.float32)
    left[:, :, : NMNIST[0] // 2] = 1
    tiny_dense_model(path, np.stack([left.ravel(), 1 - left.ravel()]), np.zeros(2), np.eye(2), np.zeros(2))


def test_convert_normalizes_on_event_counts(capsys, tmp_path):
    recs = recordings(10, 4, n=300)
    data = write_npz(tmp_path / "ev.npz", NMNIST, train=recs, test=recs[2:6])
    half_sensor_onnx(tmp_path / "m.onnx")
    argv = ["convert", tmp_path / "m.onnx", "-o", tmp_path / "m.nir", "--calibrate", data, "--steps", T, "--json"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    report = json.loads(out)
    counts = [tonic.transforms.ToImage(sensor_size=NMNIST)(ev).max() for ev, _ in recs]
    assert report["scales"]["input"] == max(counts)  # the largest count of one pixel, tonic's ToImage here
    assert report["scales"]["relu1"] == pytest.approx(300)  # all 300 events of a recording on its half
    assert report["samples"] == {"calibration": 8, "test": 4} and report["accuracy"]["ann"] == 1.0


def test_commands_print_one_line_errors(capsys, tmp_path, nmnist):
    bad = tmp_path / "bad.npz"
    np.savez(bad, events=np.zeros(3, DTYPE), offsets=np.array([0, 3]), y=np.array([0]), sensor_size=np.array([0, 1]))
    missing = f"tonic:NMNIST:{tmp_path / 'nowhere'}"
    options = f"{nmnist['npz']}?downsample=-1"
    graph = tmp_path / "digits.nir"
    api.export(SHIPPED, output=graph)
    half_sensor_onnx(tmp_path / "m.onnx")
    cases = [
        (["simulate", SHIPPED, "--data", bad], [str(bad), "sensor_size"]),
        (["train", "--data", missing, "-o", tmp_path / "m.pt"], ["no such folder"]),
        (["compile", graph, "--calibrate", missing], ["no such folder"]),
        (["learn", SHIPPED, "--rule", "ottt", "--data", options, "-o", tmp_path / "l.ncp"], ["downsample must be"]),
        (["learn", SHIPPED, "--rule", "ottt", "--data", options, "-o", nmnist["npz"]], ["would overwrite the input"]),
        (["convert", tmp_path / "m.onnx", "--calibrate", options, "-o", nmnist["npz"]], ["would overwrite the input"]),
    ]
    for argv, words in cases:
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, *words)
