#!/usr/bin/env bash
# tools/netx_env.sh [ENV]: a throwaway environment (default /tmp/netx-venv) in which lava-dl 0.6.0's netx loader
# imports: the oracle of `neurocompile export --to netx` (tools/netx_check.py runs in it; tests/hardware/test_netx.py
# finds it there, or at $NEUROCOMPILE_NETX_PYTHON). Never the project's .venv: lava-dl pins torch<2.4.
set -euo pipefail
ENV="${1:-/tmp/netx-venv}"
PYTHON="${PYTHON:-python3.11}"
TOOLS="$(cd "$(dirname "$0")" && pwd)"

"$PYTHON" -m venv "$ENV"
PIP=("$ENV/bin/python" -m pip install -q)
# torch 2.13.0 (CPU) from the wheel on disk and lava-nc 0.10.0's pins, as the Makefile's setup; h5py for netx
"${PIP[@]}" torch==2.13.0 "numpy>=1.24.4,<2" "scipy>=1.10.1,<1.15" "networkx<=2.8.7" "asteval>=0.9.31,<0.10" h5py
# what `from lava.lib.dl import netx` imports through slayer's package, at lava-dl's pins (numpy held below 2);
# not torchvision: PyPI's builds need CUDA torch, so tools/netx_check.py puts an empty module in its place
"${PIP[@]}" "numpy>=1.24.4,<2" "matplotlib>=3.5.2,<4" "opencv-python-headless>=4.8.1.78,<5" "pillow>=10.0.1,<11"
# both declare python<3.11, and lava-dl pins torch<2.4: installed without those checks and dependencies
"${PIP[@]}" --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0

"$ENV/bin/python" -c "import sys; sys.path.insert(0, '$TOOLS'); import netx_check; netx_check.import_netx()" >/dev/null
echo "lava-dl's netx imports in $ENV; tests/hardware/test_netx.py will use $ENV/bin/python"
