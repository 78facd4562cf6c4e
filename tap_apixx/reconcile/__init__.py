"""Reconcile: prove that the warehouse equals APIXX, and act on the rows that do not.

`sweep` lists every id of an entity with the tap's own transport, `warehouse` reads the loaded
tables, `compare` tells gone, missing and stale rows apart, `run` ties them together and acts
only when asked, `report` prints the result, `cli` is the `tap-apixx-reconcile` command.
See docs/reconcile.md.
"""
