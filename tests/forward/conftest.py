"""Fixtures for the forwarding tests (defined in forward_helpers)."""

from tests.forward.forward_helpers import commit, peer, store

__all__ = ["commit", "peer", "store"]
