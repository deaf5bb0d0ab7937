"""The pure-Python codec compiled by Cython and by mypyc, against the hand-written C codec.

The compiled codec (``nanomsg_kernel/_speedups.c``) is hand-written C. This measures the two
other ways of compiling it: the pure codec's modules on the hot path (``MODULES``) built
as they are by Cython 3 (pure Python mode, no annotations added) and by mypyc, each into its
own copy of the package in a temporary directory (nothing is left in the tree); each tool
once with every module and once with ``layout`` left to the interpreter (``WITHOUT_LAYOUT``).
Every variant runs in its own interpreter, with the pure codec forced; the modules'
``__file__`` proves the compiled ones are what runs. Rows: the pure codec (CPython), the
Cython and mypyc builds, the hand-written C (when built: ``python setup.py build_ext
--inplace``), for ``CalcWork`` encode, decode and round trip and the catalogue kernel's
nested ``PutItem`` encode and decode, next to raw msgpack of the equivalent int-key dict,
measured in the same process.

Run: ``python -m benchmarks.compilers`` (µs per call, the best of interleaved timeit runs on
the thread's CPU clock); ``--instr`` adds instructions per call counted with valgrind's
callgrind (each statement run N times in a fresh interpreter, the same run with N = 0 and
an empty statement subtracted, ``PYTHONHASHSEED`` fixed). Cython and mypyc are not
dependencies of the package: ``pip install cython mypy`` (mypyc comes with mypy); a variant
whose tool is missing, or a valgrind that is missing, is skipped with a message.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("codec", "body", "types", "layout", "scan", "walk")
"""The modules compiled: those the pure codec runs per call (``codec``, ``body``, ``types``)
and the rest of its body reading (``layout`` builds the per-contract functions; ``scan`` and
``walk`` read long and unusual bodies)."""
WITHOUT_LAYOUT = tuple(m for m in MODULES if m != "layout")
"""The same but ``layout``: compiled, it builds the namespace of the per-contract functions
it generates as a C-built dict, whose global lookups CPython 3.11 then cannot specialize."""

SETUP = """\
import uuid
from msgpack import packb, unpackb
from nanomsg_kernel.codec import Codec
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType
from nanomsg_kernel.contracts.catalog import CatalogRoute, Item, Price, PutItem
codec = Codec(CalcRoute, compiled=COMPILED)
work = CalcWork(a=1, b=2, op=WorkType.SUM)
frame = codec.encode(work)
cat = Codec(CatalogRoute, compiled=COMPILED)
put = PutItem(item=Item(id=uuid.UUID(int=1), name="widget", price=Price(1250), tags=["a", "b"],
              stock={"x": 3}, ratings={1: 4.5}, variants=[Price(1300, "USD")]), revision=3)
put_frame = cat.encode(put)
d = {1: 1, 2: 2, 3: 1, 4: None, 5: 0}
"""

STATEMENTS = {
    "raw msgpack round trip": "unpackb(packb(d), strict_map_key=False)",
    "CalcWork round trip": "codec.decode(codec.encode(work))",
    "CalcWork encode": "codec.encode(work)",
    "CalcWork decode": "codec.decode(frame)",
    "PutItem encode": "cat.encode(put)",
    "PutItem decode": "cat.decode(put_frame)",
}

# Runs in the variant's interpreter (its directory first on sys.path): checks which files
# the codec's modules come from, then times every statement, runs interleaved.
_TIMER = """\
import json, math, sys, time, timeit
ns = {}
exec(compile(sys.argv[1], "<setup>", "exec"), ns)
number, repeat = int(sys.argv[3]), int(sys.argv[4])
statements = json.loads(sys.argv[2])
files = {m: sys.modules["nanomsg_kernel." + m].__file__ for m in json.loads(sys.argv[5])}
if ns["codec"].compiled != ns["cat"].compiled:
    raise SystemExit("codecs disagree")
timers = {k: timeit.Timer(s, globals=ns, timer=time.thread_time) for k, s in statements.items()}
best = dict.fromkeys(statements, math.inf)
for _ in range(repeat):
    for k, t in timers.items():
        best[k] = min(best[k], t.timeit(number))
print(json.dumps({"files": files, "compiled": ns["codec"].compiled,
                  "us": {k: v / number * 1e6 for k, v in best.items()}}))
"""

# Runs under callgrind: the setup, then the statement N times.
_REPEAT = """\
import sys
exec(compile(sys.argv[1], "<setup>", "exec"), globals())
_code = compile(sys.argv[2], "<stmt>", "exec")
for _ in range(int(sys.argv[3])):
    exec(_code, globals())
"""


class Variant(NamedTuple):
    """One way of running the codec: a directory first on ``sys.path``, whether the
    hand-written C codec is used (otherwise the pure codec is forced), and the modules of
    the pure codec that are compiled in that directory."""

    name: str
    directory: Path
    compiled: bool
    modules: tuple[str, ...] = ()


def _copy_package(into: Path) -> Path:
    """A copy of the source package under ``into`` (symlinked sub-packages copied whole),
    without byte code or built extensions."""
    target = into / "nanomsg_kernel"
    shutil.copytree(ROOT / "nanomsg_kernel", target, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    return target


def _run(command: Sequence[str], cwd: Path) -> None:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed:\n{(proc.stdout + proc.stderr)[-3000:]}")


def build_cython(into: Path, modules: Sequence[str]) -> None:
    """``modules`` compiled in place by Cython 3, as they are (pure Python mode)."""
    package = _copy_package(into)
    files = [str(package / f"{m}.py") for m in modules]
    _run([sys.executable, "-m", "Cython.Build.Cythonize", "-i", "-q", "-3", "-j", "2", *files], into)


def build_mypyc(into: Path, modules: Sequence[str]) -> None:
    """``modules`` compiled in place by mypyc (they are mypy-strict clean)."""
    package = _copy_package(into)
    config = into / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\nwarn_unreachable = False\n"
                      "[mypy-construct.*,msgpack.*,zmq.*,uvloop.*]\nignore_missing_imports = True\n")
    files = [str(package / f"{m}.py") for m in modules]
    _run([sys.executable, "-m", "mypyc", "--config-file", str(config), *files], into)


def _environment(variant: Variant) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NANOMSG_KERNEL_PURE")}
    if not variant.compiled:
        env["NANOMSG_KERNEL_PURE"] = "1"
    env["PYTHONHASHSEED"] = "0"
    return env


def _setup(variant: Variant) -> str:
    return SETUP.replace("COMPILED", str(variant.compiled))


def time_variant(variant: Variant, number: int, repeat: int) -> dict[str, object]:
    """µs per call of every statement, and the files the codec's modules were loaded from."""
    proc = subprocess.run(
        [sys.executable, "-c", _TIMER, _setup(variant), json.dumps(STATEMENTS), str(number), str(repeat),
         json.dumps(MODULES)],
        cwd=variant.directory, env=_environment(variant), capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{variant.name}: {proc.stderr.strip()[-2000:]}")
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def _callgrind(variant: Variant, statement: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", _REPEAT,
             _setup(variant), statement, str(n)],
            cwd=variant.directory, env=_environment(variant), capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{variant.name}: {statement} failed under callgrind:\n{proc.stderr[-2000:]}")
        found = re.search(r"^(?:summary|totals):\s*(\d+)", out.read_text(), re.M)
        if found is None:  # pragma: no cover - a callgrind without totals
            raise RuntimeError(f"no totals in {out}")
        return int(found.group(1))


def count_variant(variant: Variant, n: int) -> dict[str, float]:
    """Instructions per call of every statement: N runs less the same run with N = 0 (start-up
    and setup), divided by N, less an empty statement's cost (the loop and ``exec``)."""
    start = _callgrind(variant, "pass", 0)
    empty = (_callgrind(variant, "pass", n) - start) / n
    return {k: (_callgrind(variant, s, n) - start) / n - empty for k, s in STATEMENTS.items()}


def speedups_built() -> bool:
    """True when the hand-written C codec is built in the source tree."""
    return any(p.suffix in (".so", ".pyd") for p in (ROOT / "nanomsg_kernel").glob("_speedups*"))


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _variants(tmp: Path, say: list[str]) -> list[Variant]:
    variants = [Variant("pure (CPython)", ROOT, False)]
    for name, module, build, tool in (("Cython", "Cython", build_cython, "pip install cython"),
                                      ("mypyc", "mypyc", build_mypyc, "pip install mypy")):
        if not _installed(module):
            say.append(f"{name}: skipped, not installed ({tool})")
            continue
        for label, modules in ((name, MODULES), (f"{name}, layout interpreted", WITHOUT_LAYOUT)):
            directory = tmp / f"{name.lower()}-{len(modules)}"
            directory.mkdir()
            try:
                build(directory, modules)
            except RuntimeError as exc:
                say.append(f"{label}: skipped, the build failed: {exc}")
                continue
            variants.append(Variant(label, directory, False, modules))
    if speedups_built():
        variants.append(Variant("hand-written C", ROOT, True))
    else:
        say.append("hand-written C: skipped, not built (python setup.py build_ext --inplace)")
    return variants


def _compiled_modules(variant: Variant, files: dict[str, str]) -> str:
    if variant.compiled:
        return "nanomsg_kernel/_speedups"
    native = sorted(m for m, f in files.items() if not f.endswith(".py"))
    if native != sorted(variant.modules):
        raise RuntimeError(f"{variant.name}: compiled {variant.modules}, loaded compiled {native}: {files}")
    return f"{len(native)} of {len(MODULES)} modules compiled"


def main(argv: Sequence[str] | None = None) -> None:
    """Build the variants, measure them, print one table per measure."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compilers", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing runs (noisier)")
    parser.add_argument("--instr", action="store_true", help="also count instructions per call with callgrind")
    parser.add_argument("-n", type=int, default=20000, help="iterations per callgrind run (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at once (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.jobs < 1:
        parser.error("-n and --jobs must be at least 1")
    number, repeat = (2_000, 5) if args.quick else (10_000, 30)
    say: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nanomsg-kernel-compilers-") as tmp:
        variants = _variants(Path(tmp), say)
        for line in say:
            print(line, file=sys.stderr)
        timed = {v.name: time_variant(v, number, repeat) for v in variants}
        counted: dict[str, dict[str, float]] = {}
        if args.instr:
            if shutil.which("valgrind") is None:
                print("--instr: skipped, valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
            else:
                with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                    counts = pool.map(lambda v: count_variant(v, args.n), variants)
                    counted = dict(zip([v.name for v in variants], counts, strict=True))
        print(f"Python {sys.version.split()[0]}; µs per call: best of {repeat} interleaved runs of {number} "
              "(thread CPU time), and the ratio to raw msgpack's round trip in the same process")
        rows = list(STATEMENTS)
        print("| variant | what runs | " + " | ".join(rows) + " |")
        print("|---|---|" + "---:|" * len(rows))
        for v in variants:
            files = timed[v.name]["files"]
            assert isinstance(files, dict)
            us = timed[v.name]["us"]
            assert isinstance(us, dict)
            base = us["raw msgpack round trip"]
            cells = [f"{us[k]:.2f} ({us[k] / base:.2f}x)" for k in rows]
            print(f"| {v.name} | {_compiled_modules(v, files)} | " + " | ".join(cells) + " |")
        if counted:
            print(f"\ninstructions per call (callgrind, N = {args.n}), and the ratio to raw msgpack's round trip")
            print("| variant | " + " | ".join(rows) + " |")
            print("|---|" + "---:|" * len(rows))
            for v in variants:
                c = counted[v.name]
                base = c["raw msgpack round trip"]
                print(f"| {v.name} | " + " | ".join(f"{c[k]:,.0f} ({c[k] / base:.2f}x)" for k in rows) + " |")


if __name__ == "__main__":
    main()
