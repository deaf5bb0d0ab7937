"""The public surface: ``nanomsg_kernel.__all__`` is pinned, sorted, and every name is documented."""

from __future__ import annotations

import inspect

import nanomsg_kernel

PUBLIC = [
    "Allow",
    "Binding",
    "Bindings",
    "BuiltinRoute",
    "CapabilityError",
    "Client",
    "ClientCall",
    "ClientInterceptor",
    "ClientMetrics",
    "Codec",
    "CodecError",
    "ConfigError",
    "Context",
    "ContractError",
    "ContractInfo",
    "DEFAULT_MAX_BODY",
    "DeadlineExceeded",
    "DecodeError",
    "Describe",
    "EncodeError",
    "FieldInfo",
    "Frame",
    "FrameTooLarge",
    "HEADER_SIZE",
    "Harness",
    "Header",
    "HealthCheck",
    "HealthStatus",
    "Identity",
    "Kind",
    "LocalBinding",
    "Message",
    "Metadata",
    "MetadataTooLarge",
    "NanomsgError",
    "Node",
    "Peer",
    "RemoteBinding",
    "RemoteError",
    "Request",
    "RoutingEnum",
    "ServerInterceptor",
    "Service",
    "ServiceError",
    "ServiceMetrics",
    "Status",
    "SyncClient",
    "TooManyObjects",
    "TransportError",
    "Unavailable",
    "contract",
    "contract_info",
    "evolve",
    "field",
    "is_contract",
    "record",
    "unknown_fields",
]


def test_all_is_the_pinned_sorted_list() -> None:
    assert nanomsg_kernel.__all__ == sorted(nanomsg_kernel.__all__)
    assert nanomsg_kernel.__all__ == PUBLIC


def test_every_public_name_exists_and_classes_and_functions_are_documented() -> None:
    for name in nanomsg_kernel.__all__:
        obj = getattr(nanomsg_kernel, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"nanomsg_kernel.{name} has no docstring"


def test_the_version_is_a_string() -> None:
    assert isinstance(nanomsg_kernel.__version__, str)
