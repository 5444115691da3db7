#!/usr/bin/env bash
# The main job on the embedded default: the shipped digits checkpoint goes through export,
# compile and simulation on every backend. Run by `make demo`.
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
echo "== bit-accurate CPU backend on the held-out digits"
$NC simulate "$OUT/digits_mlp.ncp" --backend cpu --data digits --steps $STEPS --record "$OUT/cpu_record.npz" --plot "$OUT/cpu_raster.png" --json > "$OUT/cpu.json"
echo
echo "== Lava fixed_pt on the first 20 held-out digits (one sample at a time)"
$NC simulate "$OUT/digits_mlp.ncp" --backend lava --data digits --steps $STEPS --limit 20 --record "$OUT/lava_record.npz" --json > "$OUT/lava.json"
echo
echo "== online learning: S-TLLR trains a fresh 64-128-128-10 MLP (LI readout) for 5 epochs, no graph across time"
$NC train --rule stllr --data digits --steps $STEPS --epochs 5 --output-neuron LI --seed 0 -o "$OUT/stllr_mlp.pt"
echo
.venv/bin/python tools/demo_summary.py "$OUT"
