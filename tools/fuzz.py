"""Fuzz the ``neurocompile`` command line with hostile files of every input format; count the outcomes.

    .venv/bin/python tools/fuzz.py --cases 10000 --keep out/fuzz
    .venv/bin/python tools/fuzz.py --replay ncp:123 --keep out/fuzz    # one case again, with its output
    .venv/bin/python tools/fuzz.py --replay tests/fixtures/fuzz-corpus/ncp/NAME   # a kept or corpus case
    .venv/bin/python tools/fuzz.py --cases 500 --guided                  # coverage-guided, lines reported

For each format (``.nir``, ``.ncp``, ``.pt``, spike inputs, datasets, ``.onnx``) ``tools/fuzz_inputs.py``
mutates small valid files (any key or field of the format's structure: missing, respelled, twice, wrong
type or shape, an extreme value; links, members, layer sizes, external data; bytes) and picks a command
that reads the result: inspect, simulate on the cpu and float backends, compile, export (NIR and ONNX),
learn, train or convert, now and then with an integer option at an extreme. Each case runs in a forked
child of this process (torch and neurocompile are imported, and every command warmed up, once),
``--jobs`` at a time, under an address-space cap (``--memory``) and a timeout. Each run ends in one
outcome:

    ok         exit 0
    rejected   exit 2 and stderr is one line ``error: ...``: the input was refused properly
    noisy      exit 2 with anything else on stderr (more lines, warnings, an overlong line)
    internal   exit 1 (``error: internal error: ...``) or any other exit code
    traceback  a Python traceback anywhere in the output
    crash      killed by a signal (segfault, file-size limit), or out of memory under the cap
    hang       still running at the timeout, then killed
    unreadable exit 0, but the file the command wrote (``-o``) is refused by its own reader
    accepted   exit 0 on a file that every command must refuse (the case says why: a key twice in a
               program.json, an unknown key, an ONNX tensor whose data lie in another file)

The last seven are bugs; the exit code is 1 if any occurred. The ``warned`` column counts the ok runs
that printed a Python warning (numerics worth a look, not failures); ``unmade`` counts the cases the
generator itself failed to make (a fuzzer bug: skipped, reported, and counted in the exit code). Case ``FORMAT:N`` is generated
from ``random.Random(f"{seed}:{FORMAT}:{N}")``, so ``--seed`` and ``--replay`` reproduce it. The first
``--examples`` cases of every bug class (and of ``warned``) are kept under ``--keep``: a folder holding
the file, the command (``command.txt``, run it inside the folder), the mutation and the output. With
``--corpus DIR`` the first bug cases of small files of each kind (format, outcome, message) go into
``DIR/FORMAT/`` as regression cases that ``tests/tools/test_fuzz.py`` replays; ``--write-signatures DIR``
writes ``fuzz_inputs.SIGNATURES`` there.

``--guided`` records in every child which lines of neurocompile/, backends/ and models/ ran
(``sys.settrace``), keeps the files that were read and run (``ok``) and ran a line no case ran before as
extra seeds, and mutates them further: a third of the cases of a format start from one, drawn in
proportion to the lines its run covered, with a command drawn afresh.
``--coverage`` only records, for a plain campaign of the same size to compare with. The report then
gives the lines covered.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: children run one thread each

import argparse
import dataclasses
import gc
import io
import json
import marshal
import random
import re
import resource
import select
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

if __package__:  # imported as tools.fuzz (tests/tools/test_fuzz.py)
    from .fuzz_inputs import FORMATS, MUST_REFUSE, SIGNATURE_FILES, SIGNATURES, STEPS, Case, make_case, make_seeds
else:  # run as a script (``python tools/fuzz.py``): fuzz_inputs.py is a sibling in the script's folder
    from fuzz_inputs import FORMATS, MUST_REFUSE, SIGNATURE_FILES, SIGNATURES, STEPS, Case, make_case, make_seeds

OUTCOMES = ("ok", "rejected", "noisy", "internal", "traceback", "crash", "hang", "unreadable", "accepted")
BAD = OUTCOMES[2:]
UNREADABLE_EXIT = 3  # a child's exit code: the command succeeded, its output does not load
MAX_ERROR_LINE = 1000  # characters: a longer one-line error is noisy
FILE_LIMIT = 1 << 30  # bytes a case may write to one file
OUT_OF_MEMORY = ("MemoryError", "can't allocate memory", "std::bad_alloc")
CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "fuzz-corpus"
CORPUS_MAX_BYTES = 256 << 10  # a corpus case's files, at most (larger signatures are stored as a recipe)
CORPUS_PER_SIGNATURE = 2  # bug cases saved per format, outcome and message (numbers and names blanked)
POOL_MAX = 400  # guided: earlier cases kept per format to mutate further
LINES = ".lines"  # in a case's folder: the project's lines its run executed (--guided, --coverage)


@dataclass(frozen=True)
class Result:
    """How one run ended: its outcome class, exit code (or -signal), output and duration."""

    outcome: str
    code: int | None
    stdout: str
    stderr: str
    seconds: float


def classify(status: int | None, stdout: str, stderr: str) -> str:
    """The outcome class of a run that ended with wait ``status`` (None: killed at the timeout)."""
    if status is None:
        return "hang"
    if "Traceback (most recent call last)" in stdout + stderr:
        return "traceback"
    if os.WIFSIGNALED(status):
        return "crash"
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return "ok"
    if code == UNREADABLE_EXIT:
        return "unreadable"
    if code == 2:
        return "rejected" if is_one_line_error(stderr) else "noisy"
    if any(marker in stderr for marker in OUT_OF_MEMORY):
        return "crash"
    return "internal"


def judged(case, result: Result) -> Result:
    """``result`` as the case makes it: ``accepted`` when the command succeeded on a file it must refuse."""
    if result.outcome == "ok" and case.refuse:
        return dataclasses.replace(
            result, outcome="accepted", stderr=result.stderr + f"fuzz: must refuse: {case.refuse}\n"
        )
    return result


def is_one_line_error(stderr: str) -> bool:
    text = stderr.rstrip("\n")
    return text.startswith("error: ") and "\n" not in text and len(text) <= MAX_ERROR_LINE


# --- running cases in forked children ----------------------------------------------------------------


def preload() -> None:
    """Import what the commands import and build the CPU kernel, once, before any fork."""
    import h5py  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import nir  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import torch

    import neurocompile.analysis.inspection  # noqa: F401
    import neurocompile.analysis.summary  # noqa: F401
    import neurocompile.api  # noqa: F401
    import neurocompile.backends.cpu as cpu
    import neurocompile.backends.float_ref  # noqa: F401
    import neurocompile.compiler.quantize  # noqa: F401
    import neurocompile.frontend.torch_export  # noqa: F401
    import neurocompile.learning.onchip  # noqa: F401
    import neurocompile.onnx.convert  # noqa: F401
    from neurocompile.cli import COMMAND_MODULES

    for name in COMMAND_MODULES:
        __import__(f"neurocompile.cli.{name}")
    torch.set_num_threads(1)
    cpu._load_kernel()
    gc.freeze()  # children never scan (and so never copy) the pages of what is loaded by now


def warm_up(models, folder: Path) -> None:
    """Run every command once here, on valid seeds: what torch, nir and onnxruntime set up on first use
    (hundreds of milliseconds) is then inherited by every child instead of redone."""
    import contextlib

    folder.mkdir(parents=True, exist_ok=True)
    for model in models:
        for argv in _valid_commands(model, folder):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                _cli_exit_code(argv)
            for output in folder.iterdir():
                output.unlink()


def _valid_commands(model, folder: Path) -> list:
    """Every command that applies to a seed model, on its own valid inputs, writing into ``folder``."""
    files = {form: str(path) for form, path in model.files.items()}
    spikes, data = str(model.spikes), ["--data", str(model.labelled), "--steps", str(STEPS)]
    out = str(folder / "out")
    commands = [["inspect", files[form]] for form in ("nir", "ncp") if form in files]
    commands += [["simulate", files[f], "--backend", "float", "--input", spikes] for f in ("nir", "pt") if f in files]
    commands += [["simulate", files[f], "--backend", "cpu", *data] for f in ("nir", "ncp", "pt") if f in files]
    if "nir" in files:
        commands.append(["compile", files["nir"], "-o", out + ".ncp", "--calibrate", spikes])
    if "pt" in files:
        commands.append(["export", files["pt"], "-o", out + ".nir"])
        commands.append(["export", files["pt"], "--to", "onnx", "-o", out + ".onnx"])
    if model.name == "mlp":
        commands.append(["train", *data, "--epochs", "1", "--hidden", "5", "--threads", "1", "-o", out + ".pt"])
    if model.classifier and "ncp" in files:
        commands.append(["learn", files["ncp"], "--rule", "ottt", *data, "--limit", "8", "-o", out + ".ncp"])
    if "onnx" in files:
        calibrate = ["--calibrate", str(model.labelled), "--steps", "4", "--limit", "4"]
        commands.append(["convert", files["onnx"], "-o", out + ".nir", *calibrate])
    return commands


def _child(argv: list, folder: Path, memory: int, debug: bool, trace: bool) -> None:
    """Run ``neurocompile ARGV`` in ``folder`` with output to ``.stdout``/``.stderr`` there, then load the
    file it wrote (``-o``) if it succeeded; with ``trace``, write the project's lines it ran to ``LINES``
    there; never returns."""
    code, lines = 70, None
    try:
        os.setpgid(0, 0)
        os.chdir(folder)
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
        _redirect(debug)
        _warnings_on_stderr()
        lines = _trace_lines() if trace else None
        code = _cli_exit_code(argv)
        if code == 0 and "-o" in argv and not _loads(argv[argv.index("-o") + 1]):
            code = UNREADABLE_EXIT
    except BaseException:
        traceback.print_exc()
    finally:
        if lines is not None:
            sys.settrace(None)
            threading.settrace(None)
            try:
                with open(LINES, "wb") as fh:
                    marshal.dump(list(lines), fh)
            except Exception:
                pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def project_roots() -> tuple:
    """The folders of the project's code whose lines count as covered: neurocompile/, backends/, models/."""
    import neurocompile
    import neurocompile.backends
    import neurocompile.models

    return tuple(
        str(Path(m.__file__).resolve().parent) + os.sep
        for m in (neurocompile, neurocompile.backends, neurocompile.models)
    )


def _trace_lines() -> set:
    """Start recording ``(file, line)`` of every line the project's code runs, in this thread and new ones."""
    lines, inside, roots = set(), {}, project_roots()
    add = lines.add

    def local(frame, event, arg):
        if event == "line":
            add((frame.f_code.co_filename, frame.f_lineno))
        return local

    def call(frame, event, arg):
        name = frame.f_code.co_filename
        known = inside.get(name)
        if known is None:
            known = inside[name] = name.startswith(roots)
        return local if known else None

    sys.settrace(call)
    threading.settrace(call)
    return lines


def read_lines(folder: Path) -> set:
    """The lines a traced case ran (empty when it wrote none: killed, or not traced)."""
    try:
        with open(folder / LINES, "rb") as fh:
            return set(marshal.load(fh))
    except (OSError, EOFError, ValueError, TypeError):
        return set()


def _redirect(debug: bool) -> None:
    """stdin from /dev/null, stdout and stderr to files in the working folder, as fresh text streams;
    ``NEUROCOMPILE_DEBUG`` set (tracebacks of internal errors) only when ``debug``."""
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, name in ((1, ".stdout"), (2, ".stderr")):
        os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    sys.stdout, sys.stderr = (
        io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="backslashreplace")
        for fd in (1, 2)
    )
    if debug:
        os.environ["NEUROCOMPILE_DEBUG"] = "1"
    else:
        os.environ.pop("NEUROCOMPILE_DEBUG", None)


def _warnings_on_stderr() -> None:
    """Python's default warning filters, shown on stderr as a fresh interpreter shows them: a parent that records
    warnings (pytest) would otherwise keep a case's warnings from its ``.stderr``."""
    warnings.resetwarnings()
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
        warnings.formatwarning(message, category, filename, lineno, line)
    )


def _cli_exit_code(argv: list) -> int:
    from neurocompile.cli import main

    try:
        main([str(arg) for arg in argv])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def _loads(output: str) -> bool:
    """Whether the model file a command wrote loads (its reader's error goes to stderr if not): a model by
    ``load_model``, an ONNX file by onnx's full check."""
    import onnx

    from neurocompile.api import load_model
    from neurocompile.errors import NeurocompileError

    try:
        if output.endswith(".onnx"):
            onnx.checker.check_model(output, full_check=True)
        else:
            load_model(output)
    except (NeurocompileError, onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        print(f"fuzz: the command's output {output} does not load: {exc}", file=sys.stderr)
        return False
    return True


def _start(argv: list, folder: Path, memory: int, debug: bool, trace: bool) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(argv, folder, memory, debug, trace)
    return pid


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="backslashreplace")
    except OSError:
        return ""


def _finish(pid: int, status: int | None, folder: Path, started: float) -> Result:
    stdout, stderr = _read(folder / ".stdout"), _read(folder / ".stderr")
    code = None if status is None else os.waitstatus_to_exitcode(status)
    return Result(classify(status, stdout, stderr), code, stdout, stderr, time.monotonic() - started)


def _kill(pid: int) -> None:
    """SIGKILL the child's process group (it made one of its own), or the child if it had not yet."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def run_cases(cases, jobs: int = 2, timeout: float = 20.0, memory: int = 4 << 30, debug: bool = False, trace=False):
    """Run ``(key, folder, argv)`` items in forked children, ``jobs`` at once; yields ``(key, folder, Result)``
    as they end. A child still running after ``timeout`` seconds is killed (outcome ``hang``). ``trace``:
    each child records the project's lines it runs (:func:`read_lines`)."""
    cases = iter(cases)
    running = {}  # pidfd -> (pid, key, folder, started)
    exhausted = False
    while True:
        while not exhausted and len(running) < jobs:
            item = next(cases, None)
            if item is None:
                exhausted = True
                break
            key, folder, argv = item
            pid = _start(argv, folder, memory, debug, trace)
            running[os.pidfd_open(pid)] = (pid, key, folder, time.monotonic())
        if not running:
            return
        now = time.monotonic()
        wait = max(0.0, min(started + timeout for _, _, _, started in running.values()) - now)
        ready, _, _ = select.select(list(running), [], [], wait)
        now = time.monotonic()
        for fd in list(running):
            pid, key, folder, started = running[fd]
            if fd in ready:
                status = os.waitpid(pid, 0)[1]
            elif now - started >= timeout:
                _kill(pid)
                status = None
            else:
                continue
            os.close(fd)
            del running[fd]
            yield key, folder, _finish(pid, status, folder, started)


# --- campaigns ---------------------------------------------------------------------------------------


@dataclass
class Campaign:
    """Outcome counts per format, the bug examples kept, and the campaign's settings."""

    counts: dict
    examples: dict
    seconds: float
    settings: dict
    busy: dict  # format -> seconds its cases ran
    messages: dict  # format -> Counter of rejection messages with names and numbers blanked
    lines: int | None = None  # project lines the cases ran, all together (--guided, --coverage)
    pooled: dict | None = None  # format -> cases kept to mutate further (--guided)
    saved: list | None = None  # corpus folders written (--corpus)

    @property
    def bugs(self) -> int:
        """Bugs of neurocompile, and cases the fuzzer failed to make (bugs of the fuzzer)."""
        return sum(counts[kind] for counts in self.counts.values() for kind in (*BAD, "unmade"))


def case_rng(seed: int, fmt: str, index: int) -> random.Random:
    return random.Random(f"{seed}:{fmt}:{index}")


def campaign(
    formats=FORMATS,
    cases: int = 100,
    seed: int = 0,
    jobs: int = 2,
    timeout: float = 20.0,
    memory: int = 4 << 30,
    keep=None,
    examples: int = 3,
    minutes: float | None = None,
    progress: bool = True,
    work=None,
    guided: bool = False,
    coverage: bool = False,
    corpus=None,
) -> Campaign:
    """``cases`` cases of each format (interleaved, so a run cut short by ``minutes`` covers them all).
    ``guided``: cases that run a project line no case ran before are kept and mutated further; ``coverage``:
    lines are only counted; ``corpus``: the first bug cases of each kind are saved there (:func:`save_case`)."""
    from tqdm import tqdm

    preload()
    root = Path(tempfile.mkdtemp(prefix="neurocompile-fuzz-", dir=work))
    started = time.monotonic()
    counts = {fmt: Counter() for fmt in formats}
    busy = Counter()
    messages = defaultdict(Counter)
    kept = defaultdict(list)
    covered: set = set()
    pool: dict = {fmt: [] for fmt in formats} if guided else {}
    saved: list = []
    found = Counter()  # corpus cases saved per format, outcome and message
    try:
        models = make_seeds(root / "seeds")
        warm_up(models, root / "warm-up")
        deadline = started + minutes * 60 if minutes else None
        unmade: dict = {}
        generated = _generate(formats, cases, seed, models, root, deadline, unmade, pool)
        bar = tqdm(total=cases * len(formats), file=sys.stderr, disable=not progress, unit="case", smoothing=0.05)
        for (fmt, index, case), folder, result in run_cases(generated, jobs, timeout, memory, trace=guided or coverage):
            result = judged(case, result)
            kind = "warned" if result.outcome == "ok" and "Warning" in result.stderr else result.outcome
            counts[fmt][result.outcome] += 1
            counts[fmt]["warned"] += kind == "warned"
            busy[fmt] += result.seconds
            if result.outcome == "rejected":
                messages[fmt][_message_kind(result.stderr)] += 1
            if kind in (*BAD, "warned") and len(kept[fmt, kind]) < examples:
                kept[fmt, kind].append(_example(fmt, index, case, folder, result, keep))
            signature = (fmt, result.outcome, _message_kind(_telling_line(result.stderr)))
            if corpus is not None and result.outcome in BAD and found[signature] < CORPUS_PER_SIGNATURE:
                entry = save_case(corpus, f"{seed}-{index}-{result.outcome}", case, folder)
                found[signature] += entry is not None
                saved += [entry] if entry is not None else []
            ran = read_lines(folder)
            if guided and result.outcome == "ok" and not ran <= covered and len(pool[fmt]) < POOL_MAX:
                pool[fmt] += _pooled(root / "pool" / f"{fmt}-{index}", case, folder, len(ran))
            covered |= ran
            shutil.rmtree(folder, ignore_errors=True)
            bar.update()
        bar.close()
        for fmt, failures in unmade.items():
            counts[fmt]["unmade"] = len(failures)
            kept[fmt, "unmade"] = [
                {"case": f"{fmt}:{i}", "outcome": "unmade", "error": e} for i, e in failures[:examples]
            ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    settings = dict(seed=seed, jobs=jobs, timeout=timeout, memory=memory, cases=cases, guided=guided)
    lines = len(covered) if guided or coverage else None
    pooled = {fmt: len(entries) for fmt, entries in pool.items()} if guided else None
    return Campaign(
        counts, dict(kept), time.monotonic() - started, settings, dict(busy), dict(messages), lines, pooled, saved
    )


def _pooled(target: Path, case, folder: Path, lines: int) -> list:
    """The case's files copied to ``target``, as a pool entry ``[(target, case, weight)]`` (none when they are
    large): a case is drawn in proportion to the lines it ran, so that runs that got far (a file read and
    run) are mutated further more often than early refusals."""
    if sum((folder / name).stat().st_size for name in case.inputs) > 8 << 20:
        return []
    target.mkdir(parents=True)
    for name in case.inputs:
        shutil.copyfile(folder / name, target / name)
    return [(target, case, lines)]


def _message_kind(stderr: str) -> str:
    """A rejection message with quoted names and numbers blanked, so that messages of one kind count together."""
    return re.sub(r"'[^']*'|-?\d[\d.e+-]*", "_", stderr.strip())[:100]


def _generate(formats, cases: int, seed: int, models, root: Path, deadline, unmade: dict, pool: dict):
    """The cases, in order; a case the generator itself fails to make is noted in ``unmade`` (format ->
    [(index, error)]) and skipped, so a fuzzer bug is reported without ending the campaign. ``pool``: the
    earlier cases of each format to mutate further (guided; filled while the campaign runs)."""
    for index in range(cases):
        if deadline is not None and time.monotonic() > deadline:
            return
        for fmt in formats:
            folder = root / f"{fmt}-{index}"
            try:
                case = make_case(fmt, models, case_rng(seed, fmt, index), folder, pool.get(fmt, ()))
            except Exception as exc:
                unmade.setdefault(fmt, []).append((index, f"{type(exc).__name__}: {exc}"))
                continue
            yield (fmt, index, case), folder, case.argv


def _example(fmt: str, index: int, case, folder: Path, result: Result, keep) -> dict:
    """A bug's summary; its folder is copied under ``keep`` (with command.txt and case.json) when given."""
    example = {
        "case": f"{fmt}:{index}",
        "outcome": result.outcome,
        "code": result.code,
        "command": "neurocompile " + shlex.join(case.argv),
        "mutation": case.mutation,
        "stderr": result.stderr[-2000:],
        "format": case.fmt,
        "file": case.file,
    }
    if keep is not None:
        target = Path(keep) / f"{fmt}-{index}-{result.outcome}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(folder, target)
        _describe(target, example)
        example["kept"] = str(target)
    return example


def _describe(target: Path, example: dict) -> None:
    (target / "command.txt").write_text(example["command"] + "\n")
    (target / "case.json").write_text(json.dumps(example, indent=2) + "\n")


def save_case(corpus, name: str, case, folder: Path) -> Path | None:
    """The case's input files and command as the regression case ``CORPUS/FORMAT/NAME`` (None when its files
    are over ``CORPUS_MAX_BYTES``)."""
    if sum((folder / file).stat().st_size for file in case.inputs) > CORPUS_MAX_BYTES:
        return None
    target = Path(corpus) / case.fmt / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for file in case.inputs:
        shutil.copyfile(folder / file, target / file)
    _describe(target, _entry(case.argv, case.mutation, case.fmt, case.file))
    return target


def _entry(argv: list, mutation: str, fmt: str, file: str) -> dict:
    """What a corpus case's case.json says: its command, how it was made, its format and file under test."""
    return {"command": "neurocompile " + shlex.join(argv), "mutation": mutation, "format": fmt, "file": file}


def write_signatures(corpus=CORPUS, names=None) -> list[Path]:
    """``fuzz_inputs.SIGNATURES`` (or those ``names``) as regression cases ``CORPUS/FORMAT/NAME``: the files
    and command, or when the files are over ``CORPUS_MAX_BYTES`` the command and ``recipe.txt`` (the
    signature's name: :func:`prepare_case` makes the files again)."""
    written = []
    with tempfile.TemporaryDirectory(prefix="neurocompile-signatures-") as work:
        models = make_seeds(Path(work) / "seeds")
        for name in names or SIGNATURES:
            target = Path(corpus) / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            argv = SIGNATURES[name](models, target)
            if sum(path.stat().st_size for path in target.iterdir()) > CORPUS_MAX_BYTES:
                for path in target.iterdir():
                    path.unlink()
                (target / "recipe.txt").write_text(name + "\n")
            fmt = name.partition("/")[0]
            _describe(target, _entry(argv, f"signature {name}", fmt, SIGNATURE_FILES[fmt]))
            written.append(target)
    return written


def corpus_cases(corpus=CORPUS) -> list[Path]:
    """The regression cases under ``corpus``: every folder that holds a ``command.txt``."""
    return sorted(path.parent for path in Path(corpus).glob("*/*/command.txt"))


def prepare_case(source: Path, folder: Path, models=None) -> Case:
    """A regression case's files copied into ``folder`` (made there from its recipe, with ``models`` from
    ``make_seeds``, when it has one); returns the case: its command, and why its file must be refused if it
    must (``fuzz_inputs.MUST_REFUSE``)."""
    source, folder = Path(source), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.name not in ("command.txt", "case.json", "recipe.txt") and path.is_file() and path.name[0] != ".":
            shutil.copyfile(path, folder / path.name)
    if (source / "recipe.txt").is_file():
        SIGNATURES[(source / "recipe.txt").read_text().strip()](models, folder)
    about = json.loads((source / "case.json").read_text())
    argv = shlex.split(about["command"])[1:]
    fmt, file = about.get("format", source.parent.name), about.get("file", "")
    refuse = MUST_REFUSE[fmt](folder / file) if fmt in MUST_REFUSE and file else None
    return Case(fmt, argv, about.get("mutation", ""), file, refuse=refuse)


def format_report(result: Campaign, top: int = 0) -> str:
    """The format x outcome table, the ``top`` most frequent rejection messages per format, then the
    examples of every bug class."""
    columns = (*OUTCOMES, "warned", "unmade")
    lines = [f"{'format':<9}{'cases':>7}" + "".join(f"{kind:>11}" for kind in columns) + f"{'s/case':>8}"]
    total = Counter()
    for fmt, counts in result.counts.items():
        total.update(counts)
        n = sum(counts[k] for k in OUTCOMES)
        mean = result.busy.get(fmt, 0.0) / max(n, 1)
        lines.append(f"{fmt:<9}{n:>7}" + "".join(f"{counts[k]:>11}" for k in columns) + f"{mean:>8.2f}")
    n, s = sum(total[k] for k in OUTCOMES), result.settings
    lines.append(f"{'total':<9}{n:>7}" + "".join(f"{total[k]:>11}" for k in columns))
    lines.append(
        f"{n} cases in {result.seconds:.0f} s ({n / max(result.seconds, 1e-9):.1f}/s); seed {s['seed']}, "
        f"jobs {s['jobs']}, timeout {s['timeout']:g} s, memory cap {s['memory'] / 2**30:g} GiB"
        + ("; guided (cases replay from their kept folders, not from FORMAT:N)" if s.get("guided") else "")
    )
    if result.lines is not None:
        pooled = f"; cases kept to mutate further: {result.pooled}" if result.pooled is not None else ""
        lines.append(f"lines of neurocompile/, backends/ and models/ run: {result.lines}{pooled}")
    if result.saved:
        lines.append(f"{len(result.saved)} bug cases saved to the corpus, e.g. {result.saved[0]}")
    for fmt, counted in result.messages.items() if top else ():
        lines.append(f"\nmost frequent rejections ({fmt}):")
        lines += [f"  {n:>6}  {message}" for message, n in counted.most_common(top)]
    for (fmt, kind), examples in sorted(result.examples.items()):
        lines.append(f"\n{kind} ({fmt}):")
        for example in examples:
            if kind == "unmade":  # the generator failed: a fuzzer bug
                lines.append(f"  {example['case']}: {example['error'][:300]}")
                continue
            lines.append(f"  {example['case']}: {example['mutation']}")
            lines.append(f"    {example['command']}")
            lines.append(f"    -> exit {example['code']}: {_telling_line(example['stderr'])[:300]}")
            if "kept" in example:
                lines.append(f"    kept in {example['kept']}")
    return "\n".join(lines)


def _telling_line(stderr: str) -> str:
    """The line of a run's stderr that says most: a warning, else the last line."""
    lines = stderr.strip().splitlines() or ["(no stderr)"]
    return next((line.strip() for line in lines if "Warning:" in line), lines[-1])


def replay(spec: str, seed: int, timeout: float, memory: int, keep) -> Result:
    """Run one case again, with its output (an internal error shows its traceback): ``FORMAT:N`` generated
    again from ``seed``, or a kept or corpus folder (with its ``command.txt``), copied first. The case's
    folder stays under ``keep`` (or a temporary one)."""
    fmt, _, index = spec.partition(":")
    source = Path(spec)
    if not (source / "command.txt").is_file() and (fmt not in FORMATS or not index.isdigit()):
        raise SystemExit(
            f"--replay: expected FORMAT:N with FORMAT one of {', '.join(FORMATS)}, or a case folder, got '{spec}'"
        )
    preload()
    base = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="neurocompile-fuzz-"))
    folder = base / (f"{source.name}-replay" if (source / "command.txt").is_file() else f"{fmt}-{index}-replay")
    shutil.rmtree(folder, ignore_errors=True)
    if (source / "command.txt").is_file():
        models = make_seeds(base / "seeds") if (source / "recipe.txt").is_file() else None
        case = prepare_case(source, folder, models)
        where = str(source)
    else:
        case = make_case(fmt, make_seeds(base / "seeds"), case_rng(seed, fmt, int(index)), folder)
        where = spec
    (_, _, result), *_ = run_cases([(None, folder, case.argv)], 1, timeout, memory, debug=True)
    result = judged(case, result)
    print(f"{where}: {case.mutation}\n  neurocompile {shlex.join(case.argv)}\n  (in {folder})")
    print(
        f"-> {result.outcome}, exit {result.code}, {result.seconds:.2f} s\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200, help="cases per format (default 200)")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated (default {','.join(FORMATS)})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per case (default 20)")
    parser.add_argument("--memory", type=float, default=4.0, help="address-space cap per case, GiB (default 4)")
    parser.add_argument("--keep", help="keep the bug examples' folders here")
    parser.add_argument("--examples", type=int, default=3, help="examples kept per format and bug class")
    parser.add_argument("--minutes", type=float, help="stop starting new cases after this long")
    parser.add_argument("--work", help="folder for the cases' temporary files (default: the system's)")
    parser.add_argument(
        "--replay", metavar="FORMAT:N|DIR", help="run one case (or a case folder) again, with its output"
    )
    parser.add_argument("--guided", action="store_true", help="keep cases that run new lines and mutate them further")
    parser.add_argument("--coverage", action="store_true", help="count the lines the cases run (no guidance)")
    parser.add_argument("--corpus", help=f"save the first bug cases of each kind here (the tests replay {CORPUS})")
    parser.add_argument("--write-signatures", metavar="DIR", help="write fuzz_inputs.SIGNATURES as cases into DIR")
    parser.add_argument("--json", help="also write the counts and examples to this JSON file")
    parser.add_argument("--top", type=int, default=0, help="show the N most frequent rejection messages per format")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    memory = int(args.memory * 2**30)
    if args.replay:
        return int(replay(args.replay, args.seed, args.timeout, memory, args.keep).outcome in BAD)
    if args.write_signatures:
        print("\n".join(map(str, write_signatures(args.write_signatures))))
        return 0
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        parser.error(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    result = campaign(
        formats,
        args.cases,
        args.seed,
        args.jobs,
        args.timeout,
        memory,
        args.keep,
        args.examples,
        args.minutes,
        not args.quiet,
        args.work,
        args.guided,
        args.coverage,
        args.corpus,
    )
    print(format_report(result, args.top))
    if args.json:
        examples = {f"{fmt}/{kind}": found for (fmt, kind), found in result.examples.items()}
        report = {"counts": result.counts, "examples": examples, "seconds": result.seconds, **result.settings}
        report |= {"lines": result.lines, "pooled": result.pooled}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return int(result.bugs > 0)


if __name__ == "__main__":
    sys.exit(main())
