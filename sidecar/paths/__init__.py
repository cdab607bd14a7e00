"""Store path grammars, one module per cloud store kind: pure, no I/O, no store client.

Part of the contract between webhook and agent, like :mod:`sidecar.config`: the
webhook checks each annotation's path with the same parser the agent later
reads it with, so admission and the agent never disagree on a path. Vault paths
are the store's own (any clean relative path) and need no module.
"""
