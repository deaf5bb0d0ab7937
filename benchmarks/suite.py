"""The whole benchmark suite: every benchmark, one table, written as Markdown and JSON.

``python -m benchmarks [--quick] [--seconds S] [--only SECTION,...] [--out PATH]`` (see
:mod:`benchmarks.__main__`). Sections, each run in this process with its servers in child
processes:

* ``codec`` — :mod:`benchmarks.codec`: frame round trip against raw msgpack and msgspec;
* ``inproc`` — :mod:`benchmarks.inproc`: binding call and ``inproc://`` against a plain await;
* ``tcp`` — :mod:`benchmarks.tcp`: the TCP transport against a bare asyncio echo;
* ``zmq`` — :mod:`benchmarks.zmq`: the ZeroMQ transport against raw pyzmq;
* ``grpc`` — :mod:`benchmarks.versus_grpc`: our network transports against gRPC Python;
* ``sizes`` — :mod:`benchmarks.sizes`: 100 B, 10 KiB and 1 MiB bodies on every transport;
* ``nats`` — :mod:`benchmarks.nats`: nats:// against raw nats-py request/reply (and
  FastStream, when installed) through a nats-server of its own, asyncio loop; skipped with a
  message when ``nats-server`` is not on PATH.

:func:`rows` turns the results into one table: for each measure, our figure, the baseline
measured in the same run, their ratio and the aim.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._util import ROOT

__all__ = ["DEFAULT_OUT", "SECTIONS", "machine", "markdown", "rows", "run", "size_rows", "write"]

SECTIONS = ("codec", "inproc", "tcp", "zmq", "grpc", "sizes", "nats")
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "latest"
"""Where the results go by default: ``latest.md`` and ``latest.json``."""

Row = dict[str, Any]


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, CPU model, Python, library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for dist in ("msgpack", "msgspec", "pyzmq", "uvloop", "grpcio", "protobuf", "nats-py", "faststream"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        import zmq

        versions["libzmq"] = zmq.zmq_version()
    except ImportError:
        versions["libzmq"] = None
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": versions,
    }


def run(quick: bool = False, seconds: float | None = None, only: Sequence[str] = SECTIONS,
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the sections in ``only`` (in :data:`SECTIONS` order); ``seconds`` tightens the
    load windows of the tcp, grpc and sizes sections (codec, inproc and zmq have fixed
    quick/full lengths). Returns ``{"machine", "quick", "seconds", section: results,
    "elapsed_s": {section: s}}``."""
    unknown = set(only) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    results: dict[str, Any] = {"machine": machine(), "quick": quick, "seconds": seconds, "elapsed_s": {},
                               "load_average": {"start": _load()}}
    for section in SECTIONS:
        if section not in only:
            continue
        progress(f"running {section} ...")
        start = time.perf_counter()
        results[section] = _RUNNERS[section](quick, seconds)
        results["elapsed_s"][section] = round(time.perf_counter() - start, 2)
        if section in ("grpc", "sizes", "nats"):
            skipped = results[section].get("skipped") or results[section].get("grpc_skipped") or next(
                (r["faststream_skipped"] for r in results[section].values()
                 if isinstance(r, dict) and "faststream_skipped" in r), None)
            if skipped:
                progress(skipped)
    results["load_average"]["end"] = _load()
    return results


def _load() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other work on the machine skews the figures)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _codec(quick: bool, seconds: float | None) -> dict[str, Any]:
    from benchmarks import codec

    return dict(codec.run(quick))


def _inproc(quick: bool, seconds: float | None) -> dict[str, Any]:
    from benchmarks import inproc

    return dict(inproc.run(quick))


def _tcp(quick: bool, seconds: float | None) -> dict[str, Any]:
    from benchmarks import tcp

    return tcp.run(quick, seconds=seconds)


def _zmq(quick: bool, seconds: float | None) -> dict[str, Any]:
    from benchmarks import zmq

    return zmq.run(quick)


def _grpc(quick: bool, seconds: float | None) -> dict[str, Any]:
    from benchmarks import versus_grpc

    return versus_grpc.run(quick, seconds=seconds)


def _sizes(quick: bool, seconds: float | None) -> dict[str, Any]:
    from benchmarks import sizes

    return sizes.run(quick, seconds=seconds)


def _nats(quick: bool, seconds: float | None) -> dict[str, Any]:
    from benchmarks import nats

    return nats.run(quick, loops=("asyncio",), seconds=seconds)


_RUNNERS: dict[str, Callable[[bool, float | None], dict[str, Any]]] = {
    "codec": _codec, "inproc": _inproc, "tcp": _tcp, "zmq": _zmq, "grpc": _grpc, "sizes": _sizes, "nats": _nats,
}


def _row(area: str, measure: str, loop: str, unit: str, ours: float, baseline_name: str, baseline: float,
         aim: str = "", met: bool | None = None, ratio: float | None = None) -> Row:
    if ratio is None:
        ratio = ours / baseline if baseline else math.nan
    return {"area": area, "measure": measure, "loop": loop, "unit": unit, "ours": ours,
            "baseline_name": baseline_name, "baseline": baseline, "ratio": ratio, "aim": aim, "met": met}


def rows(results: dict[str, Any]) -> list[Row]:
    """The main table: one row per measure with our figure, the same-run baseline, the ratio
    (ours / baseline) and the aim (``met`` is ``None`` where there is none)."""
    out: list[Row] = []
    if "codec" in results:
        c = results["codec"]
        r = c["ratio_roundtrip_vs_msgpack"]
        name = "compiled" if c.get("compiled") else "pure"
        out.append(_row("codec", "CalcWork frame round trip", "-", "µs", c["ours_roundtrip_us"],
                        "raw msgpack dict", c["msgpack_roundtrip_us"], f"≤ 1x ({name} codec)", r <= 1))
        out.append(_row("codec", "CalcWork frame round trip, pure codec", "-", "µs", c["pure_roundtrip_us"],
                        "raw msgpack dict", c["msgpack_roundtrip_us"]))
        if "msgspec_roundtrip_us" in c:
            out.append(_row("codec", "CalcWork frame round trip", "-", "µs", c["ours_roundtrip_us"],
                            "msgspec Struct", c["msgspec_roundtrip_us"]))
    if "inproc" in results:
        i = results["inproc"]
        over = i["binding_overhead_ns"] / 1000
        out.append(_row("binding", "call through a LocalBinding", "asyncio", "µs", i["binding_ns"] / 1000,
                        "plain await", i["plain_await_ns"] / 1000, f"≤ +2 µs (now +{over:.2f} µs)", over <= 2))
        out.append(_row("inproc://", "service+client round trip", "asyncio", "µs", i["inproc_ns"] / 1000,
                        "plain await", i["plain_await_ns"] / 1000, "< 25 µs", i["inproc_ns"] < 25_000))
    for loop, t in results.get("tcp", {}).items():
        if "skipped" in t:
            continue
        echo = t["echo"]
        for target, label in (("frames", "tcp transport"), ("service", "service+client")):
            r = t["ratios"][target]
            floor = 0.8 if target == "frames" else 0.9
            aim_p, met_p = f"≥ {floor:.0%}", r["pipelined_throughput"] >= floor
            aim_c, met_c = ("≤ 1.3x", r["closed_p50"] <= 1.3) if target == "frames" else ("", None)
            out.append(_row("tcp://", f"{label}: pipelined(64) calls/s", loop, "calls/s",
                            t[target]["pipelined_calls_per_s"], "bare asyncio echo", echo["pipelined_calls_per_s"],
                            aim_p, met_p))
            out.append(_row("tcp://", f"{label}: closed-loop p50", loop, "µs", t[target]["p50_us"],
                            "bare asyncio echo", echo["p50_us"], aim_c, met_c))
    for loop, z in results.get("zmq", {}).items():
        if "skipped" in z:
            continue
        raw = z["raw"]
        zmq_rows: tuple[tuple[str, str, float | None], ...] = (
            ("raw->service", "raw pyzmq -> service", None), ("transport", "zmq transport", 0.6),
            ("frames->service", "transport -> service", None),
            ("service", "service+client", 0.6),
        )
        for target, label, aim in zmq_rows:
            if target not in z:
                continue
            r = z["ratios"][target]
            out.append(_row("zmq+tcp://", f"{label}: pipelined(64) calls/s", loop, "calls/s",
                            z[target]["pipelined_calls_per_s"], "raw pyzmq (blocking)", raw["pipelined_calls_per_s"],
                            *((f"≥ {aim:.0%}", r["pipelined_throughput"] >= aim) if aim is not None else ())))
            out.append(_row("zmq+tcp://", f"{label}: closed-loop p50", loop, "µs", z[target]["p50_us"],
                            "raw pyzmq (blocking)", raw["p50_us"]))
        ev = z["events"]
        out.append(_row("zmq+tcp://", "events one way (publish -> subscriber)", loop, "events/s",
                        ev["events_per_s"], "raw pyzmq XPUB -> SUB", ev["raw_events_per_s"]))
        w = z["workers"]
        out.append(_row("zmq+tcp://", "CPU-bound service, workers=2", loop, "calls/s", w["workers=2"],
                        "workers=1", w["workers=1"], "> 1x", w["ratio"] > 1))
    g = results.get("grpc", {})
    for loop, v in g.items():
        if not isinstance(v, dict) or "skipped" in v:
            continue
        base = v["grpc"]
        for target, label in (("tcp", "tcp://"), ("zmq", "zmq+tcp://")):
            ours, r = v[target], v["ratios"][target]
            out.append(_row("vs gRPC", f"{label} service+client: closed-loop calls/s", loop, "calls/s",
                            ours["calls_per_s"], "gRPC Python (grpc.aio)", base["calls_per_s"], "≥ 5x",
                            r["closed_throughput"] >= 5))
            out.append(_row("vs gRPC", f"{label} service+client: pipelined(64) calls/s", loop, "calls/s",
                            ours["pipelined_calls_per_s"], "gRPC Python (grpc.aio)", base["pipelined_calls_per_s"],
                            "≥ 10x", r["pipelined_throughput"] >= 10))
            out.append(_row("vs gRPC", f"{label} service+client: closed-loop p50", loop, "µs", ours["p50_us"],
                            "gRPC Python (grpc.aio)", base["p50_us"]))
            out.append(_row("vs gRPC", f"{label} service+client: pipelined(64) p50", loop, "µs",
                            ours["pipelined_p50_us"], "gRPC Python (grpc.aio)", base["pipelined_p50_us"]))
    out += _nats_rows(results.get("nats", {}))
    return out


def _nats_rows(n: dict[str, Any]) -> list[Row]:
    """The nats:// rows: ours, 2 and 4 instances and FastStream against raw nats-py."""
    out: list[Row] = []
    for loop, v in n.items():
        if not isinstance(v, dict) or "skipped" in v:
            continue
        raw, ratios = v["raw"], v["ratios"]
        base = "raw nats-py request/reply"
        for target, label in (("service", "service+client"), ("frames", "nats transport"),
                              ("service_x2", "service+client, 2 instances"),
                              ("service_x4", "service+client, 4 instances"), ("faststream", "FastStream broker.request")):
            if target not in v:
                continue
            r = ratios[target]
            aim_p, met_p = ("≥ 80%", r["pipelined_throughput"] >= 0.8) if target == "service" else ("", None)
            aim_c, met_c = ("≤ 1.3x", r["closed_p50"] <= 1.3) if target == "service" else ("", None)
            out.append(_row("nats://", f"{label}: pipelined(64) calls/s", loop, "calls/s",
                            v[target]["pipelined_calls_per_s"], base, raw["pipelined_calls_per_s"], aim_p, met_p))
            out.append(_row("nats://", f"{label}: closed-loop p50", loop, "µs", v[target]["p50_us"], base,
                            raw["p50_us"], aim_c, met_c))
        if "faststream" in v:
            ours, theirs = v["service"]["pipelined_calls_per_s"], v["faststream"]["pipelined_calls_per_s"]
            out.append(_row("nats://", "service+client: pipelined(64) calls/s", loop, "calls/s", ours,
                            "FastStream broker.request", theirs, "≥ 3x", ours >= 3 * theirs))
    return out


def size_rows(results: dict[str, Any]) -> list[Row]:
    """The message-size table: per transport and body size, closed-loop p50 (and its growth
    over the 100 B body), closed and pipelined calls/s, pipelined MiB/s one way."""
    from benchmarks.sizes import TRANSPORTS

    s = results.get("sizes", {})
    out: list[Row] = []
    for transport in TRANSPORTS:
        for label, r in s.get(transport, {}).items():
            out.append({"transport": transport, "loop": s["loop"], "body": label, **r})
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return {True: "yes", False: "**no**", None: ""}[v]
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:,.2f}" if abs(v) < 10 else f"{v:,.1f}"
    return str(v)


def _ratio(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.3f}x" if v < 0.1 else f"{v:.2f}x"


def markdown(results: dict[str, Any], command: str = "python -m benchmarks") -> str:
    """The results as Markdown: the machine, the main table, the gRPC table, the size table."""
    m = results["machine"]
    v = m["versions"]
    lines = [
        f"Command: `{command}`{' (quick: figures are noisier)' if results.get('quick') else ''}",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['implementation']} {m['python']}, {m['platform']}; "
        f"msgpack {v['msgpack']}, msgspec {v['msgspec']}, pyzmq {v['pyzmq']} (libzmq {v['libzmq']}), "
        f"uvloop {v['uvloop']}, grpcio {v['grpcio']}, protobuf {v['protobuf']}, nats-py {v.get('nats-py')}, "
        f"faststream {v.get('faststream')}.",
        "",
        f"Load average (1, 5, 15 min) at start {results.get('load_average', {}).get('start')}, "
        f"at end {results.get('load_average', {}).get('end')}.",
        "",
        "Ratio = ours / baseline, both measured in this run (for calls/s higher is better, for µs lower is).",
        "",
        "| area | measure | loop | ours | baseline | baseline figure | ratio | aim | met |",
        "|---|---|---|---:|---|---:|---:|---|---|",
    ]
    for r in rows(results):
        lines.append(f"| {r['area']} | {r['measure']} | {r['loop']} | {_fmt(r['ours'])} {r['unit']} | "
                     f"{r['baseline_name']} | {_fmt(r['baseline'])} {r['unit']} | {_ratio(r['ratio'])} | "
                     f"{r['aim']} | {_fmt(r['met'])} |")
    g = results.get("grpc")
    if g is not None:
        lines += ["", "gRPC Python and our network transports, the same `Echo` call, 64 in flight when pipelined:", ""]
        if "skipped" in g:
            lines.append(f"*{g['skipped']}*")
        else:
            from benchmarks.versus_grpc import LABELS, TARGETS

            lines += ["| loop | target | closed calls/s | closed p50 µs | closed p99 µs | pipelined calls/s "
                      "| pipelined p50 µs |", "|---|---|---:|---:|---:|---:|---:|"]
            for loop, res in g.items():
                if "skipped" in res:
                    lines.append(f"| {loop} | *{res['skipped']}* ||||||")
                    continue
                for target in TARGETS:
                    t = res[target]
                    lines.append(f"| {loop} | {LABELS[target]} | {_fmt(t['calls_per_s'])} | {_fmt(t['p50_us'])} | "
                                 f"{_fmt(t['p99_us'])} | {_fmt(t['pipelined_calls_per_s'])} | "
                                 f"{_fmt(t['pipelined_p50_us'])} |")
    sized = size_rows(results)
    if sized:
        lines += ["", f"Cost by message size (`blob` echo, loop {sized[0]['loop']}; pipelined: 64 in flight; "
                  "MiB/s: payload one way):", "",
                  "| transport | body | closed p50 µs | p50 vs 100 B | closed calls/s | pipelined calls/s "
                  "| pipelined MiB/s |", "|---|---|---:|---:|---:|---:|---:|"]
        for r in sized:
            lines.append(f"| {r['transport']} | {r['body']} | {_fmt(r['p50_us'])} | {r['p50_vs_100b']:.1f}x | "
                         f"{_fmt(r['calls_per_s'])} | {_fmt(r['pipelined_calls_per_s'])} | "
                         f"{_fmt(r['pipelined_mib_per_s'])} |")
        if "grpc_skipped" in results["sizes"]:
            lines += ["", f"*{results['sizes']['grpc_skipped']}*"]
    n = results.get("nats")
    if n is not None and "skipped" in n:
        lines += ["", f"*nats:// rows skipped: {n['skipped']}*"]
    for loop, v in (n or {}).items():
        if isinstance(v, dict) and "faststream_skipped" in v:
            lines += ["", f"*FastStream row left out ({loop}): {v['faststream_skipped']}*"]
    took = results.get("elapsed_s", {})
    if took:
        lines += ["", "Seconds per section: " + ", ".join(f"{k} {s:.1f}" for k, s in took.items())
                  + f" (total {sum(took.values()):.1f})."]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], out: Path, command: str = "python -m benchmarks") -> tuple[Path, Path]:
    """Write ``out`` + ``.md`` (:func:`markdown`) and ``out`` + ``.json`` (the results, the
    table rows and the size rows); return both paths."""
    out.parent.mkdir(parents=True, exist_ok=True)
    md, js = out.with_name(out.name + ".md"), out.with_name(out.name + ".json")
    md.write_text(markdown(results, command), encoding="utf-8")
    payload = {"command": command, "results": results, "rows": rows(results), "sizes": size_rows(results)}
    js.write_text(json.dumps(_finite(payload), indent=1, default=str, allow_nan=False) + "\n", encoding="utf-8")
    return md, js


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by ``None`` (strict JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def command_line(argv: Sequence[str]) -> str:
    """How the suite was started, for the report."""
    return " ".join([f"{Path(sys.executable).name} -m benchmarks", *argv])
