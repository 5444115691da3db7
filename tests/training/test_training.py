"""Training rules against BPTT as the oracle (small float64 networks), and the data encoders.

BPTT is autograd through the models' own forward over the whole sequence; the online rules
never build a graph over time, so agreement checks their traces against the exact gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurocompile.data import latency_encode, load_dataset, load_digits_spikes, load_npz, rate_encode, rows_encode
from neurocompile.errors import NeurocompileError
from neurocompile.models.architectures import MLP
from neurocompile.semantics.discretization import Convention
from neurocompile.training.bptt import BPTT
from neurocompile.training.common import FakeQuant, evaluate, layer_views, quantized_tau
from neurocompile.training.ottt import OTTT
from neurocompile.training.stllr import STLLR

SUBTRACT = Convention(reset="subtract")


def small_mlp(decay: float, output: str = "LIF", conv: Convention = SUBTRACT, seed: int = 1):
    """A 6-7-5-3 float64 MLP with a detached reset and unit input gain, weights large enough to spike."""
    tau = conv.dt / (1.0 - decay)
    p = dict(tau=tau, r=tau / conv.dt)
    torch.manual_seed(seed)
    model = MLP(
        (6, 7, 5, 3), neuron="LIF", output_neuron=output, neuron_params=p, output_params=dict(p), convention=conv
    ).double()
    for module in model.modules():
        if hasattr(module, "detach_reset"):
            module.detach_reset = True
        if isinstance(module, torch.nn.Linear):
            module.weight.data *= 3.0
    return model


def sample_batch(seed: int = 0, steps: int = 10):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(4, steps, 6, generator=gen, dtype=torch.float64) < 0.5).double()
    return x, torch.tensor([0, 1, 2, 1])


def gradients(rule_cls, model, x, y, **kwargs):
    model.zero_grad()
    rule_cls(model, **kwargs).run_batch(x, y)
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("output,loss", [("LIF", "ce"), ("LIF", "mse"), ("LI", "ce")])
def test_ottt_last_layer_equals_bptt_with_detached_reset(output, loss):
    x, y = sample_batch()
    bptt = gradients(BPTT, small_mlp(0.8, output), x, y, loss=loss)
    ottt = gradients(OTTT, small_mlp(0.8, output), x, y, loss=loss)
    assert bptt["fc3.weight"].abs().max() > 1e-3  # a non-trivial gradient
    torch.testing.assert_close(ottt["fc3.weight"], bptt["fc3.weight"], rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(ottt["fc3.bias"], bptt["fc3.bias"], rtol=1e-7, atol=1e-10)
    # Hidden layers lose BPTT's temporal path through the later layers: they differ.
    assert not torch.allclose(ottt["fc1.weight"], bptt["fc1.weight"], rtol=1e-3)


@pytest.mark.parametrize("output", ["LIF", "LI"])
def test_stllr_without_post_term_equals_ottt_a(output):
    x, y = sample_batch(1)
    model = small_mlp(0.7, output)
    decay = float(layer_views(model)[0].decay().flatten()[0])  # the exact membrane decay
    ottt = gradients(OTTT, small_mlp(0.7, output), x, y)
    stllr = gradients(STLLR, small_mlp(0.7, output), x, y, factors=(0.5, decay, 0.0, 1.0))
    for name in ottt:
        torch.testing.assert_close(stllr[name], ottt[name], rtol=1e-7, atol=1e-10)
    # The post-synaptic term changes the hidden layers' gradients.
    other = gradients(STLLR, small_mlp(0.7, output), x, y, factors=(0.5, decay, -0.2, 1.0))
    assert not torch.allclose(other["fc1.weight"], ottt["fc1.weight"])


def test_ottt_with_zero_decay_equals_bptt_everywhere():
    x, y = sample_batch(2)
    bptt = gradients(BPTT, small_mlp(0.0), x, y)
    ottt = gradients(OTTT, small_mlp(0.0), x, y)
    for name in bptt:
        torch.testing.assert_close(ottt[name], bptt[name], rtol=1e-7, atol=1e-10)


def test_online_forward_matches_the_model():
    """The online engine's outputs equal the models' forward (the contract's lif_step)."""
    x, y = sample_batch(3)
    model = small_mlp(0.8, conv=Convention())
    expected = model(x)
    _, out = OTTT(model).run_batch(x, y)
    torch.testing.assert_close(out, expected)


def test_fake_quant_is_8bit_with_straight_through_gradient():
    w = torch.tensor([[0.5, -1.27, 0.0031]], requires_grad=True)
    q = FakeQuant(8)(w)
    scale = 1.27 / 127
    np.testing.assert_allclose(q.detach().numpy(), [[50 * scale, -127 * scale, 0.0]], rtol=1e-6)
    q.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.ones((1, 3)))
    assert quantized_tau(5e-4, 1e-4) == pytest.approx(1e-4 * 4096 / 819)


# --- data encoders -------------------------------------------------------------------------


def test_rate_encoding_is_bernoulli_with_pixel_probability():
    prob = np.array([[0.0, 1.0, 0.25]], dtype=np.float32)
    spikes = rate_encode(np.repeat(prob, 2000, axis=0), 8, np.random.default_rng(0))
    assert spikes.shape == (2000, 8, 3) and spikes.dtype == np.float32
    assert spikes[..., 0].sum() == 0 and spikes[..., 1].min() == 1
    assert abs(spikes[..., 2].mean() - 0.25) < 0.01


def test_latency_encoding_fires_once_brightest_first():
    spikes = latency_encode(np.array([[1.0, 0.5, 0.0, 0.25]]), 5)
    # t = round((1 - p) * (T - 1)): p=1 -> 0, p=0.5 -> 2, p=0.25 -> 3; zero stays silent.
    expected = np.zeros((1, 5, 4), dtype=np.float32)
    expected[0, 0, 0] = expected[0, 2, 1] = expected[0, 3, 3] = 1
    np.testing.assert_array_equal(spikes, expected)


def test_rows_encoding_holds_each_row_for_its_steps():
    img = np.zeros((1, 8, 8), dtype=np.float32)
    img[0, 2, 5] = 1.0  # row 2, column 5
    spikes = rows_encode(img, 16, "threshold", np.random.default_rng(0))
    assert spikes.shape == (1, 16, 8)
    expected = np.zeros((1, 16, 8), dtype=np.float32)
    expected[0, 4:6, 5] = 1  # row 2 drives steps 4 and 5
    np.testing.assert_array_equal(spikes, expected)
    with pytest.raises(NeurocompileError):
        rows_encode(img, 12, "threshold", np.random.default_rng(0))


def test_digits_split_is_fixed_stratified_and_disjoint():
    x_te, y_te = load_digits_spikes(4, split="test", seed=0)
    x_tr, y_tr = load_dataset("digits", 4, "train", seed=5)
    assert x_te.shape == (360, 4, 64) and x_tr.shape == (1437, 4, 64)
    assert y_te.dtype == np.int64 and set(np.bincount(y_te)) <= {35, 36, 37}
    x_te2, y_te2 = load_digits_spikes(4, split="test", seed=0)
    np.testing.assert_array_equal(x_te, x_te2)
    np.testing.assert_array_equal(y_te, y_te2)
    assert load_dataset("digits-rows", 8, "test")[0].shape == (360, 8, 8)


def test_npz_dataset(tmp_path):
    x = (np.random.default_rng(0).random((20, 5, 3)) < 0.5).astype(np.float32)
    y = np.arange(20) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y)
    xt, yt = load_npz(tmp_path / "d.npz", None, "test")
    xr, yr = load_npz(tmp_path / "d.npz", 5, "train")
    assert len(xt) == 4 and len(xr) == 16 and xt.shape[1:] == (5, 3)
    with pytest.raises(NeurocompileError, match="time steps"):
        load_npz(tmp_path / "d.npz", 6, "test")
    np.savez(tmp_path / "bad.npz", a=x)
    with pytest.raises(NeurocompileError, match="keys"):
        load_dataset(str(tmp_path / "bad.npz"), None, "test")


# --- a tiny training run ---------------------------------------------------------------------


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids thread wake-up costs on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("rule_cls", [BPTT, OTTT, STLLR])
def test_tiny_training_improves_accuracy(rule_cls, one_thread):
    """Two classes told apart by which half of the inputs fires; chance is 50%."""
    gen = torch.Generator().manual_seed(0)
    n, steps = 128, 8
    y = torch.arange(n) % 2
    prob = torch.full((n, 1, 8), 0.05)
    prob[y == 0, :, :4] = 0.6
    prob[y == 1, :, 4:] = 0.6
    x = (torch.rand(n, steps, 8, generator=gen) < prob).float()
    tau = 1e-4 / 0.2
    torch.manual_seed(0)
    model = MLP((8, 16, 2), neuron_params=dict(tau=tau, r=tau / 1e-4), output_params=dict(tau=tau, r=tau / 1e-4))
    with torch.no_grad():
        model.fc2.weight.mul_(0.1)  # start near chance
    before = evaluate(model, x, y)
    rule = rule_cls(model, loss="ce", loss_scale=4.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):
        for i in range(0, n, 32):
            opt.zero_grad()
            rule.run_batch(x[i : i + 32], y[i : i + 32])
            opt.step()
    after = evaluate(model, x, y)
    assert after >= 0.9 and after > before + 0.2


def test_train_command_writes_checkpoint_curve_and_metrics(tmp_path, one_thread):
    import json

    from neurocompile.cli import main
    from neurocompile.frontend.checkpoint import load_checkpoint

    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = (rng.random((40, 4, 6)) < np.where(y[:, None, None] == 0, 0.6, 0.1)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "m.pt"
    main(
        [
            "train",
            "--data",
            str(tmp_path / "d.npz"),
            "--rule",
            "ottt",
            "--hidden",
            "8",
            "--epochs",
            "2",
            "--hardware-aware",
            "--json",
            "-o",
            str(out),
        ]
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert len(metrics["history"]) == 2 and metrics["sizes"] == [6, 8, 2]
    assert (tmp_path / "m.png").stat().st_size > 0
    model = load_checkpoint(out)
    w = model.fc1.weight.detach()
    steps = w / (w.abs().max() / 127)
    torch.testing.assert_close(steps, steps.round(), atol=1e-3, rtol=0)  # folded 8-bit weights
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(tmp_path / "missing.npz"), "-o", str(out)])
    assert exc.value.code == 2


@pytest.mark.parametrize("threads", ["2147483648", "-1"])
def test_a_thread_count_out_of_range_is_a_usage_error(tmp_path, capsys, threads):
    """--threads 2**31 was a ValueError inside torch (fuzzing)."""
    from tests.cli.test_cli_float import assert_one_line_error, run_cli

    code, _, err = run_cli(capsys, "train", "--threads", threads, "--epochs", "1", "-o", tmp_path / "m.pt")
    assert_one_line_error(code, err, "--threads")


@pytest.mark.parametrize("command", ["train", "learn"])
def test_a_seed_out_of_range_is_a_usage_error(tmp_path, capsys, command):
    """--seed 10**20 overflowed inside torch (fuzzing)."""
    from tests.cli.test_cli_float import assert_one_line_error, run_cli

    model = [] if command == "train" else ["models/digits_mlp.pt", "--rule", "ottt"]
    code, _, err = run_cli(capsys, command, *model, "--seed", "99999999999999999999", "-o", tmp_path / "m.out")
    assert_one_line_error(code, err, "--seed")
