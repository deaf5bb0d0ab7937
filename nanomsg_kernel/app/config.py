"""Node configs: one TOML file declares the services of a node, their bindings and listeners.

::

    [node]
    name = "calc-node"
    app_dir = "."                      # optional: import the objects from here (relative to this file)
    grace = 5.0                        # seconds in-flight calls get on shutdown
    drain = 0.0                        # seconds it keeps serving first, health checks answered DRAINING
    metrics = { listen = "127.0.0.1:9100" }   # optional: GET /metrics (Prometheus text)

    [services.calc]
    object = "nanomsg_kernel.contracts.services:calc" # module:attribute of a Service
    listen = ["tcp://127.0.0.1:7000", "zmq+tcp://127.0.0.1:7001",
              { url = "tcp://0.0.0.0:7443", tls = { cert = "server.pem", key = "server.key" } }]

    [services.gateway]
    object = "nanomsg_kernel.contracts.services:gateway"
    listen = [{ url = "tcp://127.0.0.1:7002", max_in_flight = 256 },   # with transport options
              { url = "tcp://127.0.0.1:7003", reflection = false }]   # no Describe on this one
    bindings = { calc = "calc" }       # a service of this node (in-process) or a URL

    [identities]                       # optional: callers a listener may allow (config_identities)
    gateway = { cert_name = "gateway.internal" }

:func:`load_config` checks everything it can before anything starts and reports every
problem at once, each naming the file and the key (``node.toml: services.gateway.bindings.calc:
no service named 'calc' in this node``): syntax, unknown keys, objects that cannot be
imported or are not services, bad URLs, schemes without a transport, bindings to nothing,
listeners declared twice, binding cycles that cannot start, and the ``tls`` and ``curve``
tables of listeners and bindings with every file they name
(:mod:`nanomsg_kernel.app.config_security`), and the ``nats`` table of ``nats://`` ones
(:mod:`nanomsg_kernel.app.config_nats`). URL checks live in
:mod:`~nanomsg_kernel.app.config_urls`, the start order in
:mod:`~nanomsg_kernel.app.config_graph`.

Loading a config imports the modules it names, which runs their code: a config is trusted
like a Python file. Before the services are imported, the app directory is put first on
``sys.path`` (:func:`parse_config`; :mod:`nanomsg_kernel.app.imports`).

Binding cycles. A binding by service name is a direct reference: it needs nothing started,
so any graph of them, cycles included, is fine. A binding by URL to a listener of the same
node needs that listener up before calls can flow, so the node starts the services in that
order (the target's listeners first): a service never accepts a request before the
listeners it is bound to are up. Two or more services bound to each other in a ring
through their own listeners have no such order, and the config is refused (bind one of
them by name instead). A service bound to its own listener is fine (it is up when the call
comes). URLs are compared as written (scheme case aside): ``localhost`` and ``127.0.0.1``
are different targets here.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from nanomsg_kernel.app.config_graph import cycles, start_order
from nanomsg_kernel.app.config_identities import listen_allow, parse_identities
from nanomsg_kernel.app.config_nats import nats_security
from nanomsg_kernel.app.config_security import connect_security, listen_security
from nanomsg_kernel.app.config_urls import (
    check_listen_options,
    check_url,
    listens_on_port_0,
    normalized,
    parse_host_port,
)
from nanomsg_kernel.app.imports import import_ref, use_app_dir
from nanomsg_kernel.binding import RemoteBinding
from nanomsg_kernel.errors import ConfigError
from nanomsg_kernel.node import Node
from nanomsg_kernel.peer import Identity
from nanomsg_kernel.service import Service

__all__ = [
    "ListenSpec",
    "NodeConfig",
    "NodeConfigError",
    "ServiceSpec",
    "load_config",
    "parse_config",
]

_TOP_KEYS = ("node", "services", "identities")
_NODE_KEYS = ("name", "grace", "metrics", "app_dir", "drain")
_METRICS_KEYS = ("listen",)
_SERVICE_KEYS = ("object", "listen", "bindings", "expose_errors")


class NodeConfigError(ConfigError):
    """A node config has problems; ``problems`` lists them, one ``file: key: message`` each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ListenSpec:
    """One listener: its URL and the options passed to the transport."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the node as configured."""

    name: str
    object: str
    """Where the service object comes from: ``module:attribute``."""
    service: Service
    bindings: dict[str, str]
    """Binding name -> a service name of this node, or a URL."""
    listen: tuple[ListenSpec, ...]
    binding_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Binding name -> the options of its client (TLS, CurveZMQ), for URL bindings that have any."""
    expose_errors: bool | None = None
    """Send the text of unexpected exceptions to callers (development only); ``None``: as
    the service object says."""


@dataclass(frozen=True)
class NodeConfig:
    """A checked node config: build a :class:`~nanomsg_kernel.node.Node` from it with :meth:`build`."""

    path: str
    name: str
    services: tuple[ServiceSpec, ...]
    """In start order: the targets of URL bindings within the node before their users."""
    grace: float = 5.0
    metrics_listen: tuple[str, int] | None = None
    warnings: tuple[str, ...] = ()
    drain: float = 0.0
    """Seconds the node goes on serving on shutdown, answering health checks ``DRAINING``,
    before its listeners stop (:meth:`~nanomsg_kernel.node.Node.close`)."""

    def build(self) -> Node:
        """A new (not started) node with every service, binding and listener of the config."""
        node = Node(self.name)
        by_name = {s.name: s.service for s in self.services}
        for spec in self.services:
            targets: dict[str, Service | str | RemoteBinding] = {
                name: by_name.get(target, target) for name, target in spec.bindings.items()
            }
            for name, options in spec.binding_options.items():
                targets[name] = RemoteBinding(name, spec.bindings[name], **options)
            node.add(spec.service, bindings=targets, listen=[(ls.url, ls.options) for ls in spec.listen],
                     expose_errors=spec.expose_errors)
        return node


def _keys(value: Any) -> tuple[str, ...]:
    """Every key of ``value`` when it is a table (any name is allowed there)."""
    return tuple(value) if isinstance(value, dict) else ()


class _Checker:
    """Collects problems while reading one config."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.base = os.path.dirname(os.path.abspath(path))
        """Relative paths in the config are relative to this directory (the config's)."""
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.identities: dict[str, Identity] = {}
        """The caller identities of ``[identities]``, by name (listeners' ``allow`` names them)."""

    def bad(self, key: str, message: str) -> None:
        self.problems.append(f"{self.path}: {key}: {message}" if key else f"{self.path}: {message}")

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{self.path}: {key}: {message}")

    def table(self, value: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.bad(key, f"expected a table, got {type(value).__name__}")
            return {}
        for k in value:
            if k not in allowed:
                self.bad(f"{key}.{k}" if key else k, f"unknown key (expected one of: {', '.join(allowed)})")
        return value

    def load_service(self, key: str, ref: Any) -> Service | None:
        try:
            obj = import_ref(ref)
        except ConfigError as exc:
            self.bad(key, str(exc))
            return None
        if not isinstance(obj, Service):
            self.bad(key, f"{ref} is a {type(obj).__name__}, not a Service")
            return None
        return obj


def _listen_specs(c: _Checker, key: str, value: Any) -> list[ListenSpec]:
    if not isinstance(value, list):
        c.bad(key, f"expected a list of URLs, got {type(value).__name__}")
        return []
    specs = []
    for i, item in enumerate(value):
        k = f"{key}[{i}]"
        options: dict[str, Any] = {}
        url = item
        if isinstance(item, dict):
            options = {o: v for o, v in item.items() if o not in ("url", "tls", "curve", "ssl", "allow", "nats", "reflection")}
            url = item.get("url")
            if url is None:
                c.bad(k, "a listener table needs a 'url'")
                continue
        problem = check_url(url, listen=True)
        if problem:
            c.bad(k, problem)
            continue
        if isinstance(item, dict):
            before = len(c.problems)
            options |= listen_security(item, url, k, c.base, c.bad, c.warn)
            options |= listen_allow(item, url, k, c.identities, c.bad)
            options |= nats_security(item, url, k, c.base, c.bad, c.warn)
            if len(c.problems) > before:
                continue
        problem = check_listen_options(url, options)
        if problem:
            c.bad(k, problem)
            continue
        if isinstance(item, dict) and "reflection" in item:
            if not isinstance(item["reflection"], bool):
                c.bad(f"{k}.reflection", f"expected true or false, got {item['reflection']!r}")
                continue
            options["reflection"] = item["reflection"]  # Service.serve's own option, not the transport's
        specs.append(ListenSpec(url, options))
    return specs


def _app_dir(c: _Checker, node: dict[str, Any], app_dir: str | None, default_app_dir: str | None) -> None:
    """Put the app directory first on ``sys.path``: ``app_dir``, else the config's
    ``node.app_dir`` (relative to the config's directory), else ``default_app_dir``, if any."""
    chosen = app_dir
    if chosen is None and "app_dir" in node:
        raw = node["app_dir"]
        if not isinstance(raw, str) or not raw:
            c.bad("node.app_dir", f"expected a directory path, got {raw!r}")
            return
        chosen = os.path.join(c.base, os.path.expanduser(raw))
    chosen = default_app_dir if chosen is None else chosen
    if chosen is not None:
        try:
            use_app_dir(chosen)
        except ConfigError as exc:
            c.bad("node.app_dir" if app_dir is None and "app_dir" in node else "", str(exc))


def _binding_target(c: _Checker, key: str, target: Any) -> tuple[str | None, dict[str, Any]]:
    """A binding's target (a service name or a checked URL) and its client options, if any."""
    options: dict[str, Any] = {}
    if isinstance(target, dict):
        table = c.table(target, key, ("url", "tls", "curve", "nats"))
        url = table.get("url")
        if not isinstance(url, str) or "://" not in url:
            c.bad(f"{key}.url", f"expected the URL of the service, got {url!r}")
            return None, {}
        problem = check_url(url, listen=False)
        if problem:
            c.bad(key, problem)
            return None, {}
        before = len(c.problems)
        options = connect_security(table, url, key, c.base, c.bad, c.warn)
        options |= nats_security(table, url, key, c.base, c.bad, c.warn)
        return (url if len(c.problems) == before else None), options
    if not isinstance(target, str) or not target:
        c.bad(key, f"expected a service name or a URL, got {target!r}")
        return None, {}
    if "://" in target:
        problem = check_url(target, listen=False)
        if problem:
            c.bad(key, problem)
            return None, {}
    return target, {}


def parse_config(
    text: str, path: str = "<config>", *, app_dir: str | None = None, default_app_dir: str | None = None
) -> NodeConfig:
    """Check a node config given as TOML text (``path`` names it in errors; relative paths in
    it are relative to ``path``'s directory).

    Before the services are imported, an app directory is put first on ``sys.path``:
    ``app_dir`` if given, else the config's ``node.app_dir``, else ``default_app_dir`` if
    given (the command line gives the current directory).

    Raises:
        NodeConfigError: with every problem found, each as ``path: key: message``.
    """
    c = _Checker(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        c.bad("", f"invalid TOML: {exc}")
        raise NodeConfigError(c.problems) from None
    c.table(doc, "", _TOP_KEYS)

    node = c.table(doc.get("node", {}), "node", _NODE_KEYS)
    name = node.get("name", os.path.splitext(os.path.basename(path))[0] or "node")
    if not isinstance(name, str) or not name:
        c.bad("node.name", f"expected a non-empty string, got {name!r}")
    grace = node.get("grace", 5.0)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace <= 3600:
        c.bad("node.grace", f"expected seconds from 0 to 3600, got {grace!r}")
        grace = 5.0
    drain = node.get("drain", 0.0)
    if isinstance(drain, bool) or not isinstance(drain, (int, float)) or not 0 <= drain <= 3600:
        c.bad("node.drain", f"expected seconds from 0 to 3600, got {drain!r}")
        drain = 0.0
    _app_dir(c, node, app_dir, default_app_dir)
    c.identities = parse_identities(doc.get("identities"), c.base, c.bad)
    metrics_listen: tuple[str, int] | None = None
    if "metrics" in node:
        metrics = c.table(node["metrics"], "node.metrics", _METRICS_KEYS)
        if "listen" not in metrics and isinstance(node["metrics"], dict):
            c.bad("node.metrics.listen", "missing: the host:port to serve /metrics on")
        elif "listen" in metrics:
            listen = metrics["listen"]
            try:
                if not isinstance(listen, str):
                    raise ValueError(f"expected host:port, got {listen!r}")
                metrics_listen = parse_host_port(listen)
            except ValueError as exc:
                c.bad("node.metrics.listen", str(exc))

    raw_services = c.table(doc.get("services", {}), "services", _keys(doc.get("services")))
    if not raw_services and "services" in doc and isinstance(doc["services"], dict):
        c.bad("services", "no services declared")
    elif "services" not in doc:
        c.bad("services", "missing: declare at least one [services.NAME] table")

    loaded: dict[str, tuple[Service | None, str, dict[str, str], list[ListenSpec]]] = {}
    client_options: dict[str, dict[str, dict[str, Any]]] = {}
    exposed: dict[str, bool | None] = {}
    for sname, raw in raw_services.items():
        key = f"services.{sname}"
        table = c.table(raw, key, _SERVICE_KEYS)
        service: Service | None = None
        if "object" not in table:
            if isinstance(raw, dict):
                c.bad(f"{key}.object", "missing: the service as 'module:attribute'")
        else:
            service = c.load_service(f"{key}.object", table["object"])
        if service is not None and service.name != sname:  # also keeps one object from two tables
            c.bad(f"{key}.object", f"{table['object']} is the service named {service.name!r}; "
                                   f"declare it as [services.{service.name}]")
        listen = _listen_specs(c, f"{key}.listen", table.get("listen", []))
        bindings = c.table(table.get("bindings", {}), f"{key}.bindings", _keys(table.get("bindings")))
        targets: dict[str, str] = {}
        for bname, raw_target in bindings.items():
            target, options = _binding_target(c, f"{key}.bindings.{bname}", raw_target)
            if target is not None:
                targets[bname] = target
                if options:
                    client_options.setdefault(sname, {})[bname] = options
        expose = table.get("expose_errors")
        if expose is not None and not isinstance(expose, bool):
            c.bad(f"{key}.expose_errors", f"expected true or false, got {expose!r}")
            expose = None
        exposed[sname] = expose
        loaded[sname] = (service, str(table.get("object", "")), targets, listen)

    # Cross checks: listeners declared twice, bindings to nothing, cycles.
    served: dict[str, str] = {}
    for sname, (_svc, _obj, _targets, listen) in loaded.items():
        for i, spec in enumerate(listen):
            url = normalized(spec.url)
            if listens_on_port_0(url):
                continue
            if url in served:
                c.bad(f"services.{sname}.listen[{i}]", f"{spec.url} is already listened on by [services.{served[url]}]")
            else:
                served[url] = sname
    edges: dict[str, list[tuple[str, str]]] = {}
    for sname, (_svc, _obj, targets, _listen) in loaded.items():
        for bname, target in targets.items():
            bkey = f"services.{sname}.bindings.{bname}"
            if "://" not in target:
                if target not in loaded:
                    known = ", ".join(sorted(loaded)) or "none"
                    c.bad(bkey, f"no service named {target!r} in this node (services: {known})")
                continue
            owner = served.get(normalized(target))
            if owner is not None:
                edges.setdefault(sname, []).append((bname, owner))
            elif normalized(target).startswith("inproc://"):
                c.bad(bkey, f"nothing in this node listens on {target} (inproc:// reaches only this process)")
    for ring in cycles(edges):
        names = " -> ".join([s for s, _ in ring] + [ring[0][0]])
        first_service, first_binding = ring[0]
        c.bad(f"services.{first_service}.bindings.{first_binding}",
              f"services bound by URL to each other's listeners form a cycle ({names}) that cannot "
              "start in order; bind one of them by service name (in-process) instead")

    if c.problems:
        raise NodeConfigError(c.problems)

    bound = {t for _s, _o, targets, _l in loaded.values() for t in targets.values()}
    for sname, (_svc, _obj, _targets, listen) in loaded.items():
        if not listen and sname not in bound:
            c.warnings.append(f"{path}: services.{sname}: no listener and no binding to it: it cannot be called")
    order = start_order(list(loaded), edges)
    specs = []
    for sname in order:
        svc, obj, targets, listen = loaded[sname]
        assert svc is not None
        specs.append(ServiceSpec(sname, obj, svc, targets, tuple(listen), client_options.get(sname, {}),
                                 exposed[sname]))
    return NodeConfig(path, str(name), tuple(specs), float(grace), metrics_listen, tuple(c.warnings), float(drain))


def load_config(
    path: str | os.PathLike[str], *, app_dir: str | None = None, default_app_dir: str | None = None
) -> NodeConfig:
    """Read and check the node config at ``path`` (see :func:`parse_config`, which takes the
    same ``app_dir`` and ``default_app_dir``).

    Raises:
        NodeConfigError: the file cannot be read, or has problems (all of them listed).
    """
    shown = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise NodeConfigError([f"{shown}: cannot read: {exc.strerror or exc}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NodeConfigError([f"{shown}: not UTF-8 text: {exc}"]) from None
    return parse_config(text, shown, app_dir=app_dir, default_app_dir=default_app_dir)
