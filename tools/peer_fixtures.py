"""Peer-library oracles as fixtures: each library builds, exports and runs its own networks.

For every peer library this makes a throwaway venv under ``~/.cache/neurocompile-peers/<lib>``
(never the project's .venv), installs the CPU torch 2.13.0 wheel first (constrained, so no CUDA
build is pulled) and the pinned library with the nir version it needs, then runs
``tools/peers/<lib>_cases.py`` with that venv's python. The script writes
``tests/fixtures/peers/<lib>/<case>/{model.nir, input.npy, spikes.npz, meta.json}`` (skl2onnx: an ONNX
classifier trained on the project's digits split, ``tests/fixtures/onnx/skl2onnx/<case>/{model.onnx, meta.json}``).

    python tools/peer_fixtures.py                 # every library
    python tools/peer_fixtures.py norse sinabs    # some of them
    python tools/peer_fixtures.py --cache DIR     # another venv cache
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from neurocompile.data import SPLIT_SEED, TEST_FRACTION

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "peers"
DEFAULT_CACHE = Path.home() / ".cache" / "neurocompile-peers"
TORCH = "torch==2.13.0"
COMMON = ["numpy<2", "h5py"]


@dataclass(frozen=True)
class Peer:
    """What one library's venv needs: packages installed with deps, and packages installed without."""

    packages: list[str]
    no_deps: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)  # for its cases script, after the output folder
    folder: str = "peers"  # under tests/fixtures/, the library's own folder in it


PEERS: dict[str, Peer] = {
    "snntorch": Peer(["snntorch==1.0.0", "nir==1.0.8", "nirtorch==2.6"]),
    "norse": Peer(["norse==1.1.0", "nir==1.0.8", "nirtorch==2.6"]),
    # SpikingJelly 2.0.0 pulls heavy optional deps; its neurons and NIR export need only these.
    "spikingjelly": Peer(["nir==1.0.8", "nirtorch==2.6", "tqdm", "scipy", "loguru"], no_deps=["spikingjelly==2.0.0"]),
    "sinabs": Peer(["sinabs==3.1.3", "nir==1.0.4"]),
    "rockpool": Peer(["rockpool==3.1.0", "nir==1.0.8", "nirtorch==2.6", "scipy"]),
    # an ONNX classifier trained on the digits split as neurocompile.data makes it
    "skl2onnx": Peer(
        ["scikit-learn==1.7.2", "skl2onnx==1.20.0", "onnx"], args=[str(TEST_FRACTION), str(SPLIT_SEED)], folder="onnx"
    ),
}


def pip(venv: Path, *args: str, constraints: Path) -> None:
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(constraints), *args]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def make_venv(lib: str, cache: Path) -> Path:
    """The library's venv, created and installed once (a stamp file marks a finished install)."""
    venv = cache / lib
    stamp = venv / ".installed"
    if stamp.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    constraints = cache / f"{lib}-constraints.txt"
    constraints.write_text(f"{TORCH}\n")
    peer = PEERS[lib]
    pip(venv, TORCH, *COMMON, constraints=constraints)
    pip(venv, *peer.packages, constraints=constraints)
    if peer.no_deps:
        pip(venv, "--no-deps", *peer.no_deps, constraints=constraints)
    stamp.write_text("\n".join([TORCH, *COMMON, *peer.packages, *peer.no_deps]) + "\n")
    return venv


def generate(lib: str, venv: Path) -> None:
    out = FIXTURES.parent / PEERS[lib].folder / lib
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    script = ROOT / "tools" / "peers" / f"{lib}_cases.py"
    subprocess.run([str(venv / "bin" / "python"), str(script), str(out), *PEERS[lib].args], check=True, cwd=ROOT)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("libs", nargs="*", help=f"libraries (default: all of {', '.join(PEERS)})")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the venvs live")
    args = parser.parse_args(argv)
    unknown = set(args.libs) - set(PEERS)
    if unknown:
        parser.error(f"unknown library: {', '.join(sorted(unknown))}")
    for lib in args.libs or PEERS:
        generate(lib, make_venv(lib, args.cache))


if __name__ == "__main__":
    main()
