"""Build live contract classes from a schema, without writing a module to disk.

``load_routes(schema)`` renders the kernel module exactly as ``codegen`` would, executes it
as a fresh module and returns its routing enum. Every call makes new, distinct classes,
so two versions of one kernel can be loaded side by side (e.g. to check that messages of
one version decode under the other: :func:`nanomsg_kernel.testing.assert_compatible`).
"""

from __future__ import annotations

import itertools
import re
import sys
import types
from typing import cast

from nanomsg_kernel.codegen.model import KernelSchema
from nanomsg_kernel.codegen.pysource import comment
from nanomsg_kernel.codegen.render import render_module
from nanomsg_kernel.routing import RoutingEnum

__all__ = ["load_module", "load_routes"]

_counter = itertools.count(1)


def load_module(kernel: KernelSchema) -> types.ModuleType:
    """Execute the generated module of ``kernel`` under a new, unique module name.

    The source executed is what ``codegen`` writes: the schema's texts are string literals
    in it, never code (see :mod:`nanomsg_kernel.codegen.pysource`).

    Raises:
        SchemaError: ``kernel`` cannot be written as Python (see :func:`render_module`).
    """
    label = re.sub(r"\W", "_", kernel.name) or "kernel"
    name = f"_nanomsg_schema_{label}_{next(_counter)}"
    where = comment(kernel.source or kernel.name)
    source = render_module(kernel, schema_label=where, command="(built in memory)")
    module = types.ModuleType(name, kernel.doc or None)
    module.__file__ = f"<schema {where}>"
    sys.modules[name] = module  # annotations are resolved against the module while classes are made
    try:
        exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - schema text is only in literals
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_routes(kernel: KernelSchema) -> type[RoutingEnum]:
    """The routing enum of a freshly built copy of ``kernel``'s classes."""
    module = load_module(kernel)
    return cast("type[RoutingEnum]", getattr(module, kernel.routing))
