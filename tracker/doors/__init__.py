"""Doors onto the core: each parses one wire format, calls the core, formats the reply."""
