"""How a decision is made: Referee's policy, the gate (pool, caches, deadline), one image's pipeline."""
