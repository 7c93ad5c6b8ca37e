"""Several nodes: the node registry and pool leases in PostgreSQL (`registry`), the
`hitcall nodes` command (`command`). The rules are pure, in `core.leases`."""

from .registry import NodeIdentity, NodeLive, NodeRegistry

__all__ = ["NodeIdentity", "NodeLive", "NodeRegistry"]
