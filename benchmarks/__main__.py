"""Run every benchmark and print one table: ``python -m benchmarks``.

Options: ``--quick`` (short runs for a smoke test), ``--seconds S`` (the load window of the
tcp, grpc, sizes and nats benchmarks), ``--only codec,inproc,tcp,zmq,grpc,sizes,nats`` (a subset), and
``--out PATH`` (writes ``PATH.md`` and ``PATH.json``; default ``benchmarks/results/latest``).
The gRPC rows need ``pip install grpcio grpcio-tools``; without them they are skipped with a
message and everything else runs; so do the nats rows without ``nats-server`` on PATH, and
the FastStream row without ``faststream[nats]``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.suite import DEFAULT_OUT, SECTIONS, command_line, markdown, run, write


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs for a smoke test (figures are noisier)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="load window per target of the tcp, grpc and sizes benchmarks")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="write OUT.md and OUT.json (default: %(default)s)")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = sorted(set(only) - set(SECTIONS))
    if bad:
        parser.error(f"unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    if args.seconds is not None and not 0 < args.seconds <= 60:
        parser.error("--seconds must be above 0 and at most 60")
    results = run(args.quick, args.seconds, only, progress=lambda text: print(text, file=sys.stderr, flush=True))
    command = command_line(argv)
    print(markdown(results, command))
    md, js = write(results, args.out, command)
    print(f"written: {md} and {js}", file=sys.stderr)


if __name__ == "__main__":
    main()
