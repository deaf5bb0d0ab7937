"""nanomsg-kernel: versioned binary contracts and nanoservices, in-process or over the network."""

from nanomsg_kernel.binding import Binding, Bindings, LocalBinding, RemoteBinding
from nanomsg_kernel.builtin import BuiltinRoute, Describe, HealthCheck, HealthStatus
from nanomsg_kernel.client import Client
from nanomsg_kernel.codec import Codec, Frame
from nanomsg_kernel.context import Context
from nanomsg_kernel.contract import (
    ContractInfo,
    FieldInfo,
    Message,
    Request,
    contract,
    contract_info,
    evolve,
    field,
    is_contract,
    record,
    unknown_fields,
)
from nanomsg_kernel.errors import (
    CapabilityError,
    CodecError,
    ConfigError,
    ContractError,
    DeadlineExceeded,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    MetadataTooLarge,
    NanomsgError,
    RemoteError,
    ServiceError,
    Status,
    TooManyObjects,
    TransportError,
    Unavailable,
)
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, HEADER_SIZE, Header, Kind
from nanomsg_kernel.harness import Harness
from nanomsg_kernel.interceptors import ClientCall, ClientInterceptor, ServerInterceptor
from nanomsg_kernel.metadata import Metadata
from nanomsg_kernel.metrics import ClientMetrics, ServiceMetrics
from nanomsg_kernel.node import Node
from nanomsg_kernel.peer import Allow, Identity, Peer
from nanomsg_kernel.routing import RoutingEnum
from nanomsg_kernel.service import Service
from nanomsg_kernel.sync_client import SyncClient

__version__ = "0.1.0"

__all__ = [
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
