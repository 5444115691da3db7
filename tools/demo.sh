#!/usr/bin/env bash
# The main job on the embedded default: the shipped digits checkpoint goes through export,
# compile and simulation on every backend, then learns its readout on chip (cpu, and Lava on a
# prefix of the stream). Run by `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
NC=.venv/bin/neurocompile
OUT=out/demo
mkdir -p "$OUT"
STEPS=16

echo "== environment"
$NC doctor
echo
echo "== export: models/digits_mlp.pt -> $OUT/digits_mlp.nir"
$NC export models/digits_mlp.pt -o "$OUT/digits_mlp.nir"
$NC inspect "$OUT/digits_mlp.nir"
echo
echo "== float reference on the held-out digits"
$NC simulate "$OUT/digits_mlp.nir" --backend float --data digits --steps $STEPS --record "$OUT/float_record.npz" --json > "$OUT/float.json"
echo
echo "== compile to a fixed-point program, calibrated on training digits"
$NC compile "$OUT/digits_mlp.nir" -o "$OUT/digits_mlp.ncp" --calibrate digits
echo
echo "== bit-accurate CPU backend on the held-out digits (3 silent steps after each sample: the program's output latency)"
$NC simulate "$OUT/digits_mlp.ncp" --backend cpu --data digits --steps $STEPS --record "$OUT/cpu_record.npz" --plot "$OUT/cpu_raster.png" --json > "$OUT/cpu.json"
echo
echo "== Lava fixed_pt on the first 20 held-out digits (one sample at a time)"
$NC simulate "$OUT/digits_mlp.ncp" --backend lava --data digits --steps $STEPS --limit 20 --record "$OUT/lava_record.npz" --json > "$OUT/lava.json"
echo
echo "== online learning: S-TLLR trains a fresh 64-128-128-10 MLP (LI readout) for 5 epochs, no graph across time"
$NC train --rule stllr --data digits --steps $STEPS --epochs 5 --output-neuron LI --seed 0 -o "$OUT/stllr_mlp.pt"
echo
echo "== on-chip learning: the compiled program's readout zeroed, then learned on chip in one pass over the 1437 training digits (cpu backend)"
for RULE in ottt stllr; do
  $NC learn "$OUT/digits_mlp.ncp" --rule $RULE --backend cpu --reinit-readout zero --plot "$OUT/learn_$RULE.png" --json -o "$OUT/learned_$RULE.ncp" > "$OUT/learn_$RULE.json"
  .venv/bin/python tools/demo_summary.py --learn "$OUT/learn_$RULE.json"
done
echo
echo "== Lava agrees: the same OTTT readout learning on Lava fixed_pt and on the cpu backend, first 200 training digits"
echo "== every layer learns on chip from random weights (OTTT, 10 passes; cpu backend)"
$NC learn "$OUT/digits_mlp.ncp" --rule ottt --backend cpu --layers all --init random --hidden-lr 0.001 --epochs 10 --json -o "$OUT/learned_scratch.ncp" > "$OUT/learn_scratch.json"
.venv/bin/python tools/demo_summary.py --learn "$OUT/learn_scratch.json"
$NC learn "$OUT/digits_mlp.ncp" --rule ottt --backend lava --limit 200 --reinit-readout zero --json -o "$OUT/learned_lava200.ncp" > "$OUT/learn_lava200.json"
$NC learn "$OUT/digits_mlp.ncp" --rule ottt --backend cpu --limit 200 --reinit-readout zero --json -o "$OUT/learned_cpu200.ncp" > "$OUT/learn_cpu200.json"
.venv/bin/python tools/demo_summary.py --compare "$OUT/learned_lava200.ncp" "$OUT/learned_cpu200.ncp"
echo
echo "== adaptation on chip: a network trained on digits 0-4 learns 5-9 with a fresh readout (cpu backend)"
.venv/bin/python tools/adaptation_demo.py --plot "$OUT/adaptation.png" --json "$OUT/adaptation.json"
echo
.venv/bin/python tools/demo_summary.py "$OUT"
