"""Data: loaders, the simulated cohort, splits, vocabulary and encoders."""
from ehrlib.data.encode import Vocabulary
from ehrlib.data.splits import split

__all__ = ["Vocabulary", "split"]
