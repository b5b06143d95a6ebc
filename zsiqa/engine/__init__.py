"""The Lightning engine: ``build`` (a config -> metrics, data modules, Trainers, callbacks, loggers), the scoring
module (``scoring``: predict) and the fitting module (``fitting``: fit), prediction writers, the term cache, the split,
and the two runs: evaluation (``evaluation``) and training (``training``)."""
import warnings

# Lightning 2.6's batch-size probing calls a torch pytree API that newer torch deprecates; harmless, and not ours to fix.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
# Our batch sampler (exact shards of whole batches) drops nothing, which Lightning cannot know for predict.
warnings.filterwarnings("ignore", message=r"You are using a custom batch sampler .* for prediction", category=UserWarning)
