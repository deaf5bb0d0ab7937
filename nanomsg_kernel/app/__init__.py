"""The application on top of the kernel and its services: the command line, node config, demo,
metrics listener and logs."""
