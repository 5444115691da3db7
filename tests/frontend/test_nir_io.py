"""Reading NIR files: the paper's graphs load, bad files give one-line GraphErrors naming node and field."""

from __future__ import annotations

import h5py
import nir
import numpy as np
import pytest

from neurocompile.errors import GraphError
from neurocompile.frontend.nir_io import load_graph, validate_graph

STRICT_OK = [
    "lif_norse.nir",
    "two_lif_neurons.nir",
    "cnn_sinabs.nir",
    "braille_noDelay_bias_zero.nir",
    "braille_noDelay_noBias_subtract.nir",
]


def small_graph(tau=2.5e-3):
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "fc": nir.Affine(weight=np.array([[1.0, 2.0], [3.0, 4.0]]), bias=np.zeros(2)),
            "lif": nir.LIF(
                tau=np.full(2, tau), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2)
            ),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
    )


def write(tmp_path, graph, name="g.nir"):
    path = tmp_path / name
    nir.write(str(path), graph)
    return path


def one_line_error(path, lenient=False) -> GraphError:
    with pytest.raises(GraphError) as info:
        load_graph(path, lenient=lenient)
    message = str(info.value)
    assert "\n" not in message and message
    return info.value


@pytest.mark.parametrize("name", STRICT_OK)
def test_paper_graphs_load_strict(nir_paper_dir, name):
    graph = load_graph(nir_paper_dir / name)
    assert isinstance(graph, nir.NIRGraph)
    assert graph.inputs and graph.outputs


def test_rockpool_loads_only_leniently(nir_paper_dir):
    err = one_line_error(nir_paper_dir / "lif_rockpool.nir")
    assert err.node == "output" and err.field == "input_type"
    graph = load_graph(nir_paper_dir / "lif_rockpool.nir", lenient=True)
    assert type(graph.nodes["1_LIFNeuronTorch"]).__name__ == "LIF"


@pytest.mark.parametrize("lenient", [False, True])
def test_subgraph_file_names_the_missing_node(nir_paper_dir, lenient):
    err = one_line_error(nir_paper_dir / "braille_noDelay_bias_zero_subgraph.nir", lenient=lenient)
    assert err.node == "lif1" and err.field == "edges"
    assert "'lif'" in str(err) and "lif1" in str(err)


def test_missing_file(tmp_path):
    err = one_line_error(tmp_path / "nope.nir")
    assert "no such file" in str(err)


def test_truncated_file(nir_paper_dir, tmp_path):
    data = (nir_paper_dir / "lif_norse.nir").read_bytes()
    path = tmp_path / "cut.nir"
    path.write_bytes(data[: len(data) // 2])
    assert "not a readable NIR" in str(one_line_error(path))


def test_random_bytes_and_empty_file(tmp_path):
    path = tmp_path / "noise.nir"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    one_line_error(path)
    empty = tmp_path / "empty.nir"
    empty.write_bytes(b"")
    one_line_error(empty)


def test_hdf5_without_node_group(tmp_path):
    path = tmp_path / "other.nir"
    with h5py.File(path, "w") as fh:
        fh["something"] = np.zeros(3)
    assert "'node'" in str(one_line_error(path))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_parameter(tmp_path, bad):
    graph = small_graph()
    graph.nodes["lif"].v_threshold = np.array([1.0, bad])
    err = one_line_error(write(tmp_path, graph))
    assert err.node == "lif" and err.field == "v_threshold"
    with pytest.raises(GraphError):  # lenient never accepts bad values
        load_graph(write(tmp_path, graph, "again.nir"), lenient=True)


def test_unknown_primitive(tmp_path):
    path = write(tmp_path, small_graph())
    with h5py.File(path, "r+") as fh:
        del fh["node/nodes/lif/type"]
        fh["node/nodes/lif/type"] = b"Izhikevich"
    err = one_line_error(path)
    assert err.node == "lif" and err.field == "type" and "Izhikevich" in str(err)


@pytest.mark.parametrize("group", ["node", "node/nodes/inner"])
def test_a_graph_group_with_an_unknown_field_is_refused(tmp_path, group):
    """A NIRGraph group, top level or nested, takes exactly its fields (an extra one was ignored: fuzzing)."""
    graph = small_graph()
    graph.nodes["inner"] = nir.NIRGraph(
        nodes={"i": nir.Input(np.array([2])), "o": nir.Output(np.array([2]))}, edges=[("i", "o")], type_check=False
    )
    path = write(tmp_path, graph)
    with h5py.File(path, "r+") as fh:
        fh[f"{group}/end_dim"] = 1
    err = one_line_error(path)
    assert err.field == "end_dim" and "not a field of NIRGraph" in str(err)


def test_missing_field(tmp_path):
    path = write(tmp_path, small_graph())
    with h5py.File(path, "r+") as fh:
        del fh["node/nodes/lif/tau"]
    err = one_line_error(path)
    assert err.node == "lif" and err.field == "tau"


def test_shape_mismatch_names_target(tmp_path):
    graph = small_graph()
    graph.nodes["fc"] = nir.Affine(weight=np.ones((3, 2)), bias=np.zeros(3))
    path = tmp_path / "mismatch.nir"
    nir.write(str(path), graph)
    err = one_line_error(path)
    assert err.node == "lif" and err.field == "input_type"
    one_line_error(path, lenient=True)  # different sizes: an error even leniently


def test_non_positive_time_constant(tmp_path):
    err = one_line_error(write(tmp_path, small_graph(tau=0.0)))
    assert err.node == "lif" and err.field == "tau"


def test_nested_node_is_named_by_path():
    inner = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1])}),
            "scale": nir.Scale(scale=np.array([np.nan])),
            "output": nir.Output(output_type={"output": np.array([1])}),
        },
        edges=[("input", "scale"), ("scale", "output")],
        type_check=False,
    )
    outer = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1])}),
            "sub": inner,
            "output": nir.Output(output_type={"output": np.array([1])}),
        },
        edges=[("input", "sub"), ("sub", "output")],
        type_check=False,
    )
    with pytest.raises(GraphError) as info:
        validate_graph(outer)
    assert info.value.node == "sub.scale" and info.value.field == "scale"


def test_negative_delay_and_dangling_edge():
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([2])}), "d": nir.Delay(delay=np.array([1e-4, -1e-4]))},
        edges=[("input", "d")],
        type_check=False,
    )
    with pytest.raises(GraphError) as info:
        validate_graph(graph)
    assert (info.value.node, info.value.field) == ("d", "delay")
    graph.nodes["d"] = nir.Delay(delay=np.array([1e-4, 0.0]))
    graph.edges.append(("d", "out"))
    with pytest.raises(GraphError) as info:
        validate_graph(graph)
    assert info.value.field == "edges" and "'out'" in str(info.value)


def test_an_output_shape_of_float64s_maximum_twice_is_a_one_line_error(tmp_path):
    # was: OverflowError "integer division result too large for a float" (fuzzing, issue 27)
    path = write(tmp_path, small_graph())
    with h5py.File(path, "r+") as fh:
        del fh["node/nodes/output/shape"]
        fh["node/nodes/output/shape"] = np.full(2, np.finfo(np.float64).max)  # 10^616 values
    err = one_line_error(path, lenient=True)
    assert err.node == "output" and "at most 16777216 per node" in str(err)


def test_large_arrays_reach_the_reader_as_written_and_writable(tmp_path):
    """Arrays of 1 MB and more come back from the reading child through shared memory: the same values, dtype and
    shape as nir wrote (a float32 weight stays float32), each its own array, writable without changing the file."""
    rng = np.random.default_rng(0)
    graph = small_graph()
    weight = rng.normal(size=(700, 2)).astype(np.float32)
    big = rng.normal(size=(700, 700)).astype(np.float32)  # 1.9 MB
    n = 700
    graph.nodes["fc"] = nir.Affine(weight=weight, bias=np.zeros(n, np.float32))
    graph.nodes["lif"] = nir.LIF(tau=np.full(n, 2e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n))
    graph.nodes["rec"] = nir.Linear(weight=big)
    graph.nodes["output"] = nir.Output(output_type={"output": np.array([n])})
    graph.edges.append(("lif", "rec"))
    graph.edges.append(("rec", "lif"))
    path = write(tmp_path, graph)
    loaded = load_graph(path)
    read = loaded.nodes["rec"].weight
    assert read.dtype == np.float32 and read.shape == big.shape
    np.testing.assert_array_equal(read, big)
    np.testing.assert_array_equal(loaded.nodes["fc"].weight, weight)
    read[0, 0] += 1.0
    np.testing.assert_array_equal(load_graph(path).nodes["rec"].weight, big)


def test_a_dataset_larger_than_the_memory_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """A compressed dataset that would decompress to more than the memory limit is refused in one line, naming it
    (the reading child does not fill memory with it)."""
    path = write(tmp_path, small_graph())
    with h5py.File(path, "a") as fh:
        del fh["node/nodes/fc/weight"]
        fh["node/nodes/fc"].create_dataset("weight", shape=(1 << 16, 1 << 16), dtype="f4", compression="gzip")
    monkeypatch.setenv("NEUROCOMPILE_MAX_MEMORY_GB", "1")
    with pytest.raises(GraphError, match=r"'/node/nodes/fc/weight' holds 16 GiB, more than the memory limit \(1 GiB"):
        load_graph(path)
