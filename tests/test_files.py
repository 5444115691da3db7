"""Outputs are written safely: never over an input, never half a file, ``.npz`` only when unnamed."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from neurocompile.errors import NeurocompileError
from neurocompile.files import usual_mode, write_atomically
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
