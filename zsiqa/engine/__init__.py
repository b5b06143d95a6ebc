"""The Lightning engine: the method module (``method``), prediction writers, the term cache, the split, the term data
module, evaluation runs (``runner``) and training runs (``training``)."""
import warnings

# Lightning 2.6's batch-size probing calls a torch pytree API that newer torch deprecates; harmless, and not ours to fix.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
# Our batch sampler (exact shards of whole batches) drops nothing, which Lightning cannot know for predict.
warnings.filterwarnings("ignore", message=r"You are using a custom batch sampler .* for prediction", category=UserWarning)
