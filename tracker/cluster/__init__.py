"""Several tracker processes sharing one set of swarms through Redis (docs/cluster.md).

Each instance answers from its own memory; every `--redis` tick it publishes
what changed in its core to a shared Redis stream and applies what the
others published. Nothing here runs without `--redis`.
"""
