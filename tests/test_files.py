"""Outputs are written safely: never over an input or a special file, never half a file, ``.npz`` only
when unnamed, archive members named after a model's nodes always plain names.

The helpers' unit tests; ``tests/cli/test_output_matrix.py`` runs every command's every output option."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import unquote

import nir
import numpy as np
import pytest

from neurocompile.errors import NeurocompileError
from neurocompile.files import check_outputs, plain_name, save_figure, usual_mode, write_atomically, write_together
from neurocompile.ir.recording import Recording
from neurocompile.training import trainer
from tests.cli.test_cli_float import assert_one_line_error, run_cli

SHIPPED = "models/digits_mlp.pt"


@pytest.fixture
def graph(tmp_path, capsys):
    path = tmp_path / "m.nir"
    code, _, err = run_cli(capsys, "export", SHIPPED, "-o", path)
    assert code == 0, err
    return path


def test_commands_refuse_to_overwrite_their_input(tmp_path, capsys, graph):
    before = graph.read_bytes()
    code, _, err = run_cli(capsys, "compile", graph, "-o", graph)
    assert_one_line_error(code, err, "would overwrite the input")
    assert graph.read_bytes() == before
    checkpoint = tmp_path / "m.pt"
    shutil.copy(SHIPPED, checkpoint)
    code, _, err = run_cli(capsys, "export", checkpoint, "-o", checkpoint)
    assert_one_line_error(code, err, "would overwrite the input")
    link = tmp_path / "link.ncp"
    link.symlink_to(graph)  # an output link that leads to the input
    code, _, err = run_cli(capsys, "compile", graph, "-o", link)
    assert_one_line_error(code, err, "would overwrite the input")
    assert graph.read_bytes() == before
    code, _, err = run_cli(
        capsys, "simulate", graph, "--backend", "float", "--data", "digits", "--limit", 2, "--plot", graph
    )
    assert_one_line_error(code, err, "would overwrite the input")


def _dataset(path):
    rng = np.random.default_rng(0)
    x = (rng.random((20, 4, 64)) < 0.3).astype(np.float32)
    np.savez(path, x=x, y=np.arange(20) % 2)
    return path


def test_a_dataset_is_an_input_that_no_output_overwrites(tmp_path, capsys, graph):
    # was: simulate --data d.npz --record d.npz, train --data d.npz -o d.npz (also through a link) overwrote it
    data = _dataset(tmp_path / "d.npz")
    before = data.read_bytes()
    link = tmp_path / "link.npz"
    link.symlink_to(data)
    for out in (data, link):
        for option in ("--record", "--plot"):
            code, _, err = run_cli(capsys, "simulate", graph, "--data", data, "--limit", 2, option, out)
            assert_one_line_error(code, err, "would overwrite the input")
        code, _, err = run_cli(capsys, "train", "--data", data, "--epochs", 1, "-o", out)
        assert_one_line_error(code, err, "would overwrite the input")
    code, _, err = run_cli(capsys, "train", "--data", data, "--epochs", 1, "-o", tmp_path / "d.pt")  # d.json, d.png
    assert code == 0, err
    assert data.read_bytes() == before and link.is_symlink()


def test_train_writes_all_of_its_outputs_or_none_and_makes_no_folder(tmp_path, capsys, monkeypatch):
    data = _dataset(tmp_path / "d.npz")
    train = ("train", "--data", data, "--epochs", 1, "--json", "-o")
    code, _, err = run_cli(capsys, *train, tmp_path / "missing" / "m.pt")
    assert_one_line_error(code, err, "no such directory")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "m.json").mkdir()
    code, _, err = run_cli(capsys, *train, tmp_path / "m.pt")
    assert_one_line_error(code, err, "m.json: is a directory")

    def full_disk(metrics, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trainer, "plot_learning_curve", full_disk)  # the curve fails: nothing may appear
    code, _, err = run_cli(capsys, *train, tmp_path / "n.pt")
    assert_one_line_error(code, err, "cannot write training outputs (No space left on device)")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("n.") or p.name.startswith(".n.")]


def test_record_names_get_npz_only_without_a_suffix(tmp_path, capsys, graph):
    for given, written in (("rec", "rec.npz"), ("rec.data", "rec.data"), ("r.npz", "r.npz")):
        code, _, err = run_cli(
            capsys,
            "simulate",
            graph,
            "--backend",
            "float",
            "--data",
            "digits",
            "--limit",
            2,
            "--record",
            tmp_path / given,
        )
        assert code == 0, err
        with np.load(tmp_path / written) as archive:
            assert "lif3.spikes" in archive.files
    assert not (tmp_path / "rec.data.npz").exists()


def test_a_failed_write_leaves_nothing_and_a_good_one_the_usual_mode(tmp_path):
    target = tmp_path / "out.bin"

    def half_then_fail(path):
        with open(path, "wb") as fh:
            fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(NeurocompileError, match="cannot write file \\(No space left on device\\)"):
        write_atomically(target, half_then_fail)
    assert os.listdir(tmp_path) == []
    target.write_bytes(b"old")
    with pytest.raises(NeurocompileError):
        write_atomically(target, half_then_fail)
    assert target.read_bytes() == b"old"  # the old file survives a failed rewrite
    write_atomically(target, lambda path: open(path, "wb").close())
    assert target.stat().st_mode & 0o777 == usual_mode()
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]


DEVICE = "/dev/null" if os.path.exists("/dev/null") and stat.S_ISCHR(os.stat("/dev/null").st_mode) else None


@pytest.fixture
def no_rename_outside(tmp_path, monkeypatch):
    """A safety net should the code under test be broken: as root, a rename onto /dev/null would replace it."""
    replace = os.replace

    def guarded(src, dst, *args, **kwargs):
        assert Path(os.path.abspath(dst)).is_relative_to(tmp_path), f"rename onto {dst}"
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", guarded)


@pytest.fixture
def unix_socket():
    """A listening Unix socket in a short folder (socket paths are limited to about 100 bytes)."""
    folder = tempfile.mkdtemp(prefix="nc")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(folder, "s.sock"))
    yield Path(folder) / "s.sock"
    sock.close()
    shutil.rmtree(folder)


def _targets(tmp_path: Path, unix_socket: Path) -> dict:
    """Bad output targets by kind -> (outputs, inputs, words of the refusal)."""
    src = tmp_path / "in.nir"
    src.write_bytes(b"input")
    (tmp_path / "sub").mkdir()
    (tmp_path / "soft").symlink_to(src)
    (tmp_path / "hard").hardlink_to(src)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "old").write_bytes(b"old")
    (tmp_path / "old-link").symlink_to(tmp_path / "old")
    (tmp_path / "old-hard").hardlink_to(tmp_path / "old")
    overwrite = "the output would overwrite the input"
    cases = {
        "input": ([src], [src], overwrite),
        "input via symlink": ([tmp_path / "soft"], [src], overwrite),
        "symlink input": ([src], [tmp_path / "soft"], overwrite),
        "input via hard link": ([tmp_path / "hard"], [src], overwrite),
        "input via dir/..": ([tmp_path / "sub" / ".." / "in.nir"], [src], overwrite),
        "relative input": ([src], [os.path.relpath(src)], overwrite),
        "fifo": ([tmp_path / "fifo"], [], "is a FIFO (named pipe), not a file"),
        "socket": ([unix_socket], [], "is a socket, not a file"),
        "directory": ([tmp_path / "sub"], [], "is a directory"),
        "link to a directory": ([tmp_path / "sub-link"], [], "is a directory"),
        "missing folder": ([tmp_path / "missing" / "out"], [], "no such directory"),
        "missing folder via dir/..": ([tmp_path / "missing" / ".." / "out"], [], "no such directory"),
        "folder that is a file": ([tmp_path / "file" / "out"], [], "no such directory"),
        "two outputs": ([tmp_path / "old", tmp_path / "old"], [], "is also the output"),
        "two outputs via dir/..": ([tmp_path / "new", tmp_path / "sub" / ".." / "new"], [], "is also the output"),
        "two outputs via symlink": ([tmp_path / "old", tmp_path / "old-link"], [], "is also the output"),
        "two outputs via hard link": ([tmp_path / "old-hard", tmp_path / "old"], [], "is also the output"),
    }
    (tmp_path / "sub-link").symlink_to(tmp_path / "sub")
    if DEVICE:
        (tmp_path / "null").symlink_to(DEVICE)
        cases["device"] = ([DEVICE], [], "is a character device, not a file")
        cases["link to a device"] = ([tmp_path / "null"], [], "is a character device, not a file")
    return cases


def test_check_outputs_refuses_every_bad_target(tmp_path, unix_socket, no_rename_outside):
    for kind, (outputs, inputs, words) in _targets(tmp_path, unix_socket).items():
        with pytest.raises(NeurocompileError, match=re.escape(words)) as caught:
            check_outputs(outputs, inputs)
        assert "\n" not in str(caught.value), kind
        if len(outputs) == 1 and not inputs:  # write_together (an API call may skip check_outputs) refuses it too
            with pytest.raises(NeurocompileError):
                write_atomically(outputs[0], lambda path, kind=kind: pytest.fail(f"{kind}: written"))
    assert (tmp_path / "in.nir").read_bytes() == b"input" and (tmp_path / "old").read_bytes() == b"old"
    assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    if DEVICE:
        assert stat.S_ISCHR(os.stat(DEVICE).st_mode)


def test_check_outputs_takes_new_names_links_to_other_files_and_dataset_names(tmp_path):
    (tmp_path / "in.nir").write_bytes(b"input")
    (tmp_path / "other").write_bytes(b"other")
    (tmp_path / "link").symlink_to(tmp_path / "other")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    outputs = [tmp_path / "new", tmp_path / "link", tmp_path / "dangling", tmp_path / "other.png", None]
    check_outputs(outputs, [tmp_path / "in.nir", "digits", None])


def test_an_output_symlink_is_replaced_never_written_through(tmp_path):
    target = tmp_path / "target.bin"
    target.write_bytes(b"the file the link leads to")
    link = tmp_path / "out.bin"
    link.symlink_to(target)
    write_atomically(link, lambda path: Path(path).write_bytes(b"new"))
    assert not link.is_symlink() and link.read_bytes() == b"new"
    assert target.read_bytes() == b"the file the link leads to"


def test_a_fifo_made_while_writing_is_not_replaced(tmp_path, no_rename_outside):
    target = tmp_path / "out.bin"

    def write_while_a_fifo_appears(path):
        Path(path).write_bytes(b"new")
        os.mkfifo(target)

    with pytest.raises(NeurocompileError, match="is a FIFO"):
        write_atomically(target, write_while_a_fifo_appears)
    assert stat.S_ISFIFO(os.lstat(target).st_mode) and os.listdir(tmp_path) == ["out.bin"]


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    return fig


def test_save_figure_writes_atomically_also_inside_write_together(tmp_path, monkeypatch):
    png = tmp_path / "plot.png"
    png.write_bytes(b"old plot")
    fig = _figure()

    def disk_full(*args, **kwargs):
        with open(args[0], "wb") as fh:
            fh.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fig, "savefig", disk_full)
    with pytest.raises(NeurocompileError, match="plot.png: cannot write plot \\(No space left on device\\)"):
        save_figure(fig, png)
    assert png.read_bytes() == b"old plot" and os.listdir(tmp_path) == ["plot.png"]
    save_figure(_figure(), png)
    assert png.read_bytes().startswith(b"\x89PNG") and os.listdir(tmp_path) == ["plot.png"]
    data = tmp_path / "data.bin"
    write_together([(data, lambda p: Path(p).write_bytes(b"d")), (png, lambda p: save_figure(_figure(), p))])
    assert sorted(os.listdir(tmp_path)) == [
        "data.bin",
        "plot.png",
    ]  # the inner write went into the outer's temporary file
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_mode & 0o777 == usual_mode()


BAD_NAMES = ["../../../../tmp/x", "/abs", "a\\b", "nul\0byte", "", ".", "..", "C:", "a/b", "a%2Fb", "\u00fc", " "]


def _plain(member: str) -> bool:
    return bool(member) and member not in (".", "..") and not any(c in member for c in "/\\\0:") and member.isascii()


def test_plain_names_are_plain_distinct_and_reversible():
    names = [plain_name(name) for name in BAD_NAMES]
    assert all(_plain(name) for name in names), names
    assert len(set(names)) == len(names)
    assert [unquote(name) for name in names if name not in ("%", "%2E", "%2E%2E")] == [
        name for name in BAD_NAMES if name not in ("", ".", "..")
    ]
    assert plain_name("lif1.spikes", ".npy") == "lif1.spikes.npy"  # ordinary names kept


def test_recording_members_named_after_nodes_are_plain_names(tmp_path):
    arrays = {f"{name}.spikes": np.full((1, 2, 1), i, dtype=np.float32) for i, name in enumerate(BAD_NAMES)}
    Recording(arrays, [BAD_NAMES[0]], "float").save(tmp_path / "rec.npz")
    with zipfile.ZipFile(tmp_path / "rec.npz") as archive:
        members = archive.namelist()
    assert len(members) == len(arrays) and all(_plain(m) and m.endswith(".npy") for m in members), members
    with np.load(tmp_path / "rec.npz") as archive:
        assert {unquote(key): int(archive[key][0, 0, 0]) for key in archive.files} == {
            key: i for i, key in enumerate(arrays)
        }
    assert os.listdir(tmp_path) == ["rec.npz"]


def test_nir_node_names_reach_the_recording_as_plain_names(tmp_path, capsys, nir_paper_dir):
    # was: simulate --record wrote a member 'a\\b.spikes.npy' for a NIR node named 'a\\b' (HDF5 allows it)
    graph = nir.read(str(nir_paper_dir / "two_lif_neurons.nir"))
    names = {"lif1": "a\\b", "lif2": ".."}
    nodes = {names.get(k, k): v for k, v in graph.nodes.items()}
    nir.write(
        str(tmp_path / "g.nir"), nir.NIRGraph(nodes, [(names.get(a, a), names.get(b, b)) for a, b in graph.edges])
    )
    np.save(tmp_path / "x.npy", np.ones((1, 3, 1), dtype=np.float32))
    rec = tmp_path / "rec.npz"
    code, _, err = run_cli(capsys, "simulate", tmp_path / "g.nir", "--input", tmp_path / "x.npy", "--record", rec)
    assert code == 0, err
    with zipfile.ZipFile(rec) as archive:
        members = archive.namelist()
    assert all(_plain(m) for m in members) and {"a%5Cb.spikes.npy", "...spikes.npy"} <= set(members), members
