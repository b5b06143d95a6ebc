"""Lightning engines: zero-shot evaluation (reference cache, sharded work, exact gathering) and training."""
