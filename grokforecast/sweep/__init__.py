"""Sweeps: study files, the study database, the Optuna driver and its workers."""
