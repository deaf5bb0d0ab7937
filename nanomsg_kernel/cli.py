"""The ``nanomsg-kernel`` command line.

Each command lives in the module that owns its subject and is attached here.
"""

from __future__ import annotations

import click

from nanomsg_kernel import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nanomsg-kernel")
def main() -> None:
    """nanomsg-kernel: versioned binary contracts and nanoservices."""


def _attach() -> None:
    """Attach the sub-commands (imported here so that ``--help`` stays fast to start)."""


_attach()

if __name__ == "__main__":  # pragma: no cover
    main()
