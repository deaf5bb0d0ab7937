"""Node configs: one TOML file declares the services of a node, their bindings and listeners.

::

    [node]
    name = "calc-node"
    grace = 5.0                        # seconds in-flight calls get on shutdown
    metrics = { listen = "127.0.0.1:9100" }   # optional: GET /metrics (Prometheus text)

    [services.calc]
    object = "nanomsg_kernel.contracts.services:calc" # module:attribute of a Service
    listen = ["tcp://127.0.0.1:7000", "zmq+tcp://127.0.0.1:7001"]

    [services.gateway]
    object = "nanomsg_kernel.contracts.services:gateway"
    listen = [{ url = "tcp://127.0.0.1:7002", max_in_flight = 256 }]   # with transport options
    bindings = { calc = "calc" }       # a service of this node (in-process) or a URL

:func:`load_config` checks everything it can before anything starts and reports every
problem at once, each naming the file and the key (``node.toml: services.gateway.bindings.calc:
no service named 'calc' in this node``): syntax, unknown keys, objects that cannot be
imported or are not services, bad URLs, schemes without a transport, bindings to nothing,
listeners declared twice, and binding cycles that cannot start.

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

import importlib
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from nanomsg_kernel.errors import ConfigError
from nanomsg_kernel.node import Node
from nanomsg_kernel.service import Service

__all__ = [
    "ListenSpec",
    "NodeConfig",
    "NodeConfigError",
    "ServiceSpec",
    "check_listen_options",
    "check_url",
    "import_ref",
    "load_config",
    "parse_config",
    "parse_host_port",
]

_TOP_KEYS = ("node", "services")
_NODE_KEYS = ("name", "grace", "metrics")
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

    def build(self) -> Node:
        """A new (not started) node with every service, binding and listener of the config."""
        node = Node(self.name)
        by_name = {s.name: s.service for s in self.services}
        for spec in self.services:
            targets: dict[str, Service | str] = {
                name: by_name.get(target, target) for name, target in spec.bindings.items()
            }
            node.add(spec.service, bindings=targets, listen=[(ls.url, ls.options) for ls in spec.listen],
                     expose_errors=spec.expose_errors)
        return node


def parse_host_port(value: str) -> tuple[str, int]:
    """Parse ``host:port`` (or ``[v6]:port``, optionally after ``http://``); ``ValueError`` if bad."""
    text = value[len("http://"):] if value.startswith("http://") else value
    parts = urlsplit(f"//{text}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {value!r}") from None
    if not parts.hostname or port is None or parts.path or parts.query or parts.fragment:
        raise ValueError(f"expected host:port, got {value!r}")
    return parts.hostname, port


def check_url(url: Any, *, listen: bool) -> str | None:
    """What is wrong with ``url`` as a listen (``listen=True``) or connect address, or ``None``.

    Checks the form (``scheme://address``), that a transport exists for the scheme and can
    be loaded, and, for the built-in schemes, the address as the transport itself reads it
    (a host and port for ``tcp``/``zmq+tcp``, not port 0 when connecting; a name for
    ``inproc``; a path for ``zmq+ipc``).
    """
    from nanomsg_kernel.transports.base import get_transport, split_url

    if not isinstance(url, str):
        return f"expected a URL string, got {type(url).__name__}"
    try:
        scheme, rest = split_url(url)
        get_transport(url)
    except ConfigError as exc:
        return str(exc)
    except ImportError as exc:
        return f"the transport for {url.split('://', 1)[0]}:// cannot be loaded: {exc}"
    try:
        if scheme == "inproc":
            if not rest or "/" in rest:
                return f"bad URL {url!r}: expected inproc://name"
        elif scheme in ("tcp", "tcp+tls"):
            from nanomsg_kernel.transports.tcp_stream import parse_address

            _scheme, host, port = parse_address(url)
            if not listen and (host is None or port == 0):
                return f"bad URL {url!r}: a host and a port other than 0 are needed to connect"
        elif scheme in ("zmq+tcp", "zmq+ipc"):
            from nanomsg_kernel.transports.zmq_endpoints import bind_endpoints, connect_endpoints

            if listen:
                bind_endpoints(url)
            else:
                connect_endpoints(url)
    except ConfigError as exc:
        return str(exc)
    return None


async def _no_handler(frame: bytes) -> bytes | None:
    """Stands in for a service when a built-in listener is made only to check its options."""
    raise AssertionError("a listener made to check options never serves")


def check_listen_options(url: str, options: dict[str, Any]) -> str | None:
    """What is wrong with the transport ``options`` of a listener at a checked ``url``, or ``None``.

    The built-in transports check their options when a listener is made, before anything is
    bound, so a (never started) listener is made and dropped; ZeroMQ's are parsed as its
    listener would. Options of other transports are checked when the node starts.
    """
    if not options:
        return None
    scheme = url.split("://", 1)[0].lower()
    try:
        if scheme in ("zmq+tcp", "zmq+ipc"):
            from nanomsg_kernel.transports.zmq_options import ListenOptions

            ListenOptions.parse(options, "listen")
        elif scheme in ("tcp", "inproc"):
            from nanomsg_kernel.transports.base import get_transport

            get_transport(url).listen(url, _no_handler, **options)
    except ConfigError as exc:
        return str(exc)
    except (TypeError, ValueError) as exc:
        return f"bad listen option: {exc}"
    return None


def _listens_on_port_0(url: str) -> bool:
    """True for a checked TCP or ZeroMQ listen URL that asks for a free port."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("tcp", "tcp+tls"):
        from nanomsg_kernel.transports.tcp_stream import parse_address

        return parse_address(url)[2] == 0
    if scheme == "zmq+tcp":
        from nanomsg_kernel.transports.zmq_endpoints import bind_endpoints

        return bind_endpoints(url).requests.endswith(":*")
    return False


def _keys(value: Any) -> tuple[str, ...]:
    """Every key of ``value`` when it is a table (any name is allowed there)."""
    return tuple(value) if isinstance(value, dict) else ()


def _norm(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest}"


class _Checker:
    """Collects problems while reading one config."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def bad(self, key: str, message: str) -> None:
        self.problems.append(f"{self.path}: {key}: {message}" if key else f"{self.path}: {message}")

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


def import_ref(ref: Any) -> Any:
    """The object at ``"module:attribute"`` (the attribute may be dotted).

    Raises:
        ConfigError: the reference is malformed, the module cannot be imported (the error it
            raised is named) or has no such attribute.
    """
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        raise ConfigError(f"expected 'module:attribute', got {ref!r}")
    module_name, attr = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
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
            options = {o: v for o, v in item.items() if o != "url"}
            url = item.get("url")
            if url is None:
                c.bad(k, "a listener table needs a 'url'")
                continue
        problem = check_url(url, listen=True) or check_listen_options(url, options)
        if problem:
            c.bad(k, problem)
            continue
        specs.append(ListenSpec(url, options))
    return specs


def _cycles(edges: dict[str, list[tuple[str, str]]]) -> list[list[tuple[str, str]]]:
    """Cycles of two or more services in ``edges`` (service -> [(binding, target)]), one each."""
    found: list[list[tuple[str, str]]] = []
    seen_sets: set[frozenset[str]] = set()
    state: dict[str, int] = {}
    stack: list[tuple[str, str]] = []  # (service, binding taken)

    def visit(node: str) -> None:
        state[node] = 1
        for binding, target in edges.get(node, []):
            if target == node:
                continue
            if state.get(target) == 1:
                names = [s for s, _ in stack] + [node]
                start = names.index(target)
                ring = [*stack[start:], (node, binding)]
                members = frozenset(s for s, _ in ring)
                if members not in seen_sets:
                    seen_sets.add(members)
                    found.append(ring)
            elif target not in state:
                stack.append((node, binding))
                visit(target)
                stack.pop()
        state[node] = 2

    for n in edges:
        if n not in state:
            visit(n)
    return found


def _start_order(names: list[str], edges: dict[str, list[tuple[str, str]]]) -> list[str]:
    """``names`` ordered so that each service comes after the services it is bound to by URL."""
    order: list[str] = []
    placed: set[str] = set()

    def place(n: str, path: frozenset[str]) -> None:
        if n in placed or n in path:
            return
        for _binding, target in edges.get(n, []):
            place(target, path | {n})
        placed.add(n)
        order.append(n)

    for n in names:
        place(n, frozenset())
    return order


def parse_config(text: str, path: str = "<config>") -> NodeConfig:
    """Check a node config given as TOML text (``path`` names it in errors).

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
        for bname, target in bindings.items():
            bkey = f"{key}.bindings.{bname}"
            if not isinstance(target, str) or not target:
                c.bad(bkey, f"expected a service name or a URL, got {target!r}")
            elif "://" in target:
                problem = check_url(target, listen=False)
                if problem:
                    c.bad(bkey, problem)
                else:
                    targets[bname] = target
            else:
                targets[bname] = target
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
            url = _norm(spec.url)
            if _listens_on_port_0(url):
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
            owner = served.get(_norm(target))
            if owner is not None:
                edges.setdefault(sname, []).append((bname, owner))
            elif _norm(target).startswith("inproc://"):
                c.bad(bkey, f"nothing in this node listens on {target} (inproc:// reaches only this process)")
    for ring in _cycles(edges):
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
    order = _start_order(list(loaded), edges)
    specs = []
    for sname in order:
        svc, obj, targets, listen = loaded[sname]
        assert svc is not None
        specs.append(ServiceSpec(sname, obj, svc, targets, tuple(listen), exposed[sname]))
    return NodeConfig(path, str(name), tuple(specs), float(grace), metrics_listen, tuple(c.warnings))


def load_config(path: str | os.PathLike[str]) -> NodeConfig:
    """Read and check the node config at ``path`` (see :func:`parse_config`).

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
    return parse_config(text, shown)
