"""Training of deep and classical models, checkpoints, and their test metrics.

The names here load no torch, so actors can validate a config and type results cheaply.
``train_deep`` lives in ``pipeline.training.loop`` and ``train_classical`` in
``pipeline.training.classical``: import them from there.
"""

from pipeline.training.config import TrainingConfig
from pipeline.training.data import SplitData, TrainingData, load_training_data
from pipeline.training.metrics import EpochRecord, TestMetrics, TrainingResult

__all__ = [
    "EpochRecord",
    "SplitData",
    "TestMetrics",
    "TrainingConfig",
    "TrainingData",
    "TrainingResult",
    "load_training_data",
]
