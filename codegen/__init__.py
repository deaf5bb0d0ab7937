"""Schema files in, contract modules out; schema export, diff and JSON Schema."""
