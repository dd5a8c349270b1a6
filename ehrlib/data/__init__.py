"""Data: loaders, the simulated cohort, splits, vocabulary and encoders."""
from ehrlib.data.encode import Vocabulary
from ehrlib.data.longformat import read_long
from ehrlib.data.medsformat import load_meds, meds_splits, write_meds
from ehrlib.data.mimic3 import load_mimic3
from ehrlib.data.mimic4 import load_mimic4
from ehrlib.data.registry import load, notice
from ehrlib.data.simulate import simulate, write_simulated
from ehrlib.data.splits import make_splits, paper_split, split

__all__ = ["Vocabulary", "load", "load_meds", "load_mimic3", "load_mimic4", "make_splits", "meds_splits", "notice",
           "paper_split", "read_long", "simulate", "split", "write_meds", "write_simulated"]
