"""Lightning engines: zero-shot evaluation (reference cache, sharded work, exact gathering) and training."""
import warnings

# Lightning 2.6's batch-size probing calls a torch pytree API that newer torch deprecates; harmless, and not ours to fix.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
