"""The audit package: change capture, changesets, the hash chain, events and trail queries."""
