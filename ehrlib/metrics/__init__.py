"""Fidelity, privacy and structure metrics computed from Cohorts."""
