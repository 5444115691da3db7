"""Every output option of every command refuses a bad target: one line, exit 2, nothing written.

The table: each command x each of its output options x each bad target: every input of the same
command under four names (itself, a symlink, a hard link, ``dir/..``), a FIFO, ``/dev/null`` and a
symlink to it (where the device exists), a directory, a missing folder; and two outputs of one
command that are one file. The inputs are junk bytes: a refusal must come before any input is read
(the control test shows that the same command line with good output names goes on to read them and
fails there instead). Oracles: the exit code and the one line, every byte and every file type under
the test folder as before (no output, no temporary file), the FIFO and the device still what they were.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli.test_cli_float import assert_one_line_error, run_cli

DEVICE = "/dev/null" if os.path.exists("/dev/null") and stat.S_ISCHR(os.stat("/dev/null").st_mode) else None
REFUSALS = ("would overwrite the input", "is a FIFO", "is a character device", "is a directory", "no such directory")
REFUSALS += ("is also the output",)


@dataclass(frozen=True)
class Command:
    """A command line with ``{role}`` placeholders for its input files, its output options and the
    good names of the outputs it requires (given when another of its options is under test)."""

    argv: tuple[str, ...]
    inputs: dict[str, str]
    outputs: tuple[str, ...]
    required: dict[str, str] = field(default_factory=dict)


COMMANDS = {
    "export": Command(("export", "{model}"), {"model": "m.pt"}, ("-o",)),
    "export-onnx": Command(("export", "{model}", "--to", "onnx"), {"model": "m.nir"}, ("-o",)),
    "export-netx": Command(
        ("export", "{model}", "--to", "netx", "--calibrate", "{calibrate}"),
        {"model": "m.nir", "calibrate": "c.npy"},
        ("-o",),
    ),
    "compile": Command(
        ("compile", "{model}", "--calibrate", "{calibrate}"), {"model": "m.nir", "calibrate": "c.npy"}, ("-o",)
    ),
    "simulate": Command(
        ("simulate", "{model}", "--input", "{input}"), {"model": "m.nir", "input": "x.npy"}, ("--record", "--plot")
    ),
    "simulate-data": Command(
        ("simulate", "{model}", "--backend", "cpu", "--data", "{data}", "--compare", "{compare}"),
        {"model": "m.ncp", "data": "d.npz", "compare": "r.npz"},
        ("--record", "--plot"),
    ),
    "train": Command(("train", "--data", "{data}", "--epochs", "1"), {"data": "d.npz"}, ("-o",), {"-o": "t.pt"}),
    "learn": Command(
        ("learn", "{model}", "--rule", "ottt", "--data", "{data}"),
        {"model": "m.nir", "data": "d.npz"},
        ("-o", "--plot", "--nir"),
        {"-o": "l.ncp"},
    ),
    "convert": Command(
        ("convert", "{model}", "--calibrate", "{calibrate}"),
        {"model": "m.onnx", "calibrate": "d.npz"},
        ("-o", "--plot"),
        {"-o": "c.nir"},
    ),
    "map": Command(("map", "{model}"), {"model": "m.ncp"}, ("--plot",)),
}
NAMES = ("direct", "symlink", "hardlink", "dotdot")
SPECIALS = {
    "fifo": "is a FIFO",
    "device": "is a character device",
    "device-link": "is a character device",
    "directory": "is a directory",
    "missing-folder": "no such directory",
}


def _cases():
    for name, command in COMMANDS.items():
        for option in command.outputs:
            for role in command.inputs:
                for how in NAMES:
                    yield pytest.param(name, option, f"{role}:{how}", id=f"{name}{option}-{role}-{how}")
            for special in SPECIALS:
                marks = pytest.mark.skipif(DEVICE is None and "device" in special, reason="no /dev/null")
                yield pytest.param(name, option, special, id=f"{name}{option}-{special}", marks=marks)


def snapshot(root: Path) -> dict:
    """Every entry under ``root``: its type and, for a file its bytes, for a link its target."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        for entry in dirs + files:
            path = os.path.join(folder, entry)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                content = Path(path).read_bytes()
            elif stat.S_ISLNK(mode):
                content = os.readlink(path)
            else:
                content = None
            entries[os.path.relpath(path, root)] = (stat.S_IFMT(mode), content)
    return entries


def make_inputs(tmp_path: Path, command: Command) -> dict[str, Path]:
    """The command's input files, junk bytes each (``sub/`` is there for ``dir/..`` names)."""
    (tmp_path / "sub").mkdir()
    inputs = {}
    for role, name in command.inputs.items():
        inputs[role] = tmp_path / name
        inputs[role].write_bytes(f"junk {role}, never read\n".encode())
    return inputs


def bad_target(tmp_path: Path, inputs: dict[str, Path], variant: str) -> Path:
    """An output path of the given kind, made on disk."""
    if ":" in variant:
        role, how = variant.split(":")
        source = inputs[role]
        if how == "direct":
            return source
        if how == "dotdot":
            return tmp_path / "sub" / ".." / source.name
        other = tmp_path / f"{how}{source.suffix}"
        (other.symlink_to if how == "symlink" else other.hardlink_to)(source)
        return other
    if variant == "fifo":
        os.mkfifo(tmp_path / "fifo.out")
        return tmp_path / "fifo.out"
    if variant == "device":
        return Path(DEVICE)
    if variant == "device-link":
        (tmp_path / "null.out").symlink_to(DEVICE)
        return tmp_path / "null.out"
    if variant == "directory":
        (tmp_path / "folder.out").mkdir()
        return tmp_path / "folder.out"
    assert variant == "missing-folder"
    return tmp_path / "missing" / "out.bin"


def command_line(command: Command, inputs: dict, outputs: dict, tmp_path: Path) -> list:
    argv = [part.format(**{role: path for role, path in inputs.items()}) for part in command.argv]
    given = {option: tmp_path / name for option, name in command.required.items()}
    given.update(outputs)
    for option, path in given.items():
        argv += [option, path]
    return argv


@pytest.fixture(autouse=True)
def nothing_replaced_outside(tmp_path, monkeypatch):
    """A safety net should the code under test be broken: as root, a rename onto /dev/null would replace it."""
    replace = os.replace

    def guarded(src, dst, *args, **kwargs):
        assert Path(os.path.abspath(dst)).is_relative_to(tmp_path), f"rename onto {dst}"
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", guarded)


def assert_refused(capsys, tmp_path, argv, words):
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, words)
    assert out == ""
    assert snapshot(tmp_path) == before  # inputs, links, the FIFO, old outputs: as they were; nothing new
    if DEVICE:
        assert stat.S_ISCHR(os.stat(DEVICE).st_mode)


@pytest.mark.parametrize(("name", "option", "variant"), list(_cases()))
def test_an_output_is_refused_before_any_work(tmp_path, capsys, name, option, variant):
    command = COMMANDS[name]
    inputs = make_inputs(tmp_path, command)
    target = bad_target(tmp_path, inputs, variant)
    words = "would overwrite the input" if ":" in variant else SPECIALS[variant]
    assert_refused(capsys, tmp_path, command_line(command, inputs, {option: target}, tmp_path), words)


def _pairs():
    for name, command in COMMANDS.items():
        for i, first in enumerate(command.outputs):
            for second in command.outputs[i + 1 :]:
                for how in NAMES:
                    yield pytest.param(name, first, second, how, id=f"{name}{first}{second}-{how}")


@pytest.mark.parametrize(("name", "first", "second", "how"), list(_pairs()))
def test_two_outputs_of_one_command_are_never_one_file(tmp_path, capsys, name, first, second, how):
    command = COMMANDS[name]
    inputs = make_inputs(tmp_path, command)
    old = tmp_path / "old.out"
    old.write_bytes(b"an old output")
    other = {
        "direct": old,
        "dotdot": tmp_path / "sub" / ".." / old.name,
        "symlink": tmp_path / "symlink.out",
        "hardlink": tmp_path / "hardlink.out",
    }[how]
    if how == "symlink":
        other.symlink_to(old)
    elif how == "hardlink":
        other.hardlink_to(old)
    argv = command_line(command, inputs, {first: old, second: other}, tmp_path)
    assert_refused(capsys, tmp_path, argv, "is also the output")


@pytest.mark.parametrize(
    ("output", "make", "words"),
    [
        ("t.json", None, "is also the output"),  # the checkpoint would be the metrics
        ("t.png", None, "is also the output"),  # ... or the learning curve
        ("t.pt", "fifo", "t.json: is a FIFO"),
        ("t.pt", "folder", "t.png: is a directory"),
        ("t.pt", "device", "t.json: is a character device"),
        ("t.pt", "data", "t.json: the output would overwrite the input"),
    ],
)
def test_train_refuses_its_curve_and_metrics_names_too(tmp_path, capsys, output, make, words):
    command = COMMANDS["train"]
    inputs = make_inputs(tmp_path, command)
    if make == "fifo":
        os.mkfifo(tmp_path / "t.json")
    elif make == "folder":
        (tmp_path / "t.png").mkdir()
    elif make == "device":
        if DEVICE is None:
            pytest.skip("no /dev/null")
        (tmp_path / "t.json").symlink_to(DEVICE)
    elif make == "data":
        (tmp_path / "t.json").symlink_to(inputs["data"])
    assert_refused(capsys, tmp_path, command_line(command, inputs, {"-o": tmp_path / output}, tmp_path), words)


def test_a_record_name_without_suffix_is_checked_with_npz_added(tmp_path, capsys):
    command = COMMANDS["simulate-data"]
    inputs = make_inputs(tmp_path, command)
    argv = command_line(command, inputs, {"--record": tmp_path / "d"}, tmp_path)  # d -> d.npz, the dataset
    assert_refused(capsys, tmp_path, argv, "d.npz: the output would overwrite the input")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_good_output_names_get_past_the_check(tmp_path, capsys, name):
    """The control: the same junk inputs with good output names fail where the inputs are read."""
    command = COMMANDS[name]
    inputs = make_inputs(tmp_path, command)
    outputs = {option: tmp_path / f"good{i}{option.strip('-')}" for i, option in enumerate(command.outputs)}
    before = snapshot(tmp_path)
    code, _out, err = run_cli(capsys, *command_line(command, inputs, outputs, tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not any(words in err for words in REFUSALS), err
    assert snapshot(tmp_path) == before
