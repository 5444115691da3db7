"""ONNX in and out: reading an ANN, converting it to a rate-coded SNN (``docs/ann-to-snn.md``),
and one SNN time step as ONNX (``docs/onnx-step.md``)."""

READOUTS = ("spikes", "voltage")  # how a converted network's output is read: spike counts or an integrator's v
MAX_STEPS = 2**31 - 1  # time steps of a run, at most (the memory limit usually refuses far fewer)
