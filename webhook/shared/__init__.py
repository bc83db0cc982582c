"""The shared cache: verdicts, tag digests and registry outages kept in Redis for every replica.

``codec`` (pure) signs and checks each value; ``redis_store`` is the client with its budget and
circuit. The gate does not know it is there: ``verify.cache.TwoLevelCache`` puts it behind the
local cache, and ``server.app.build_gate`` wires it in (docs/shared-cache.md).
"""
