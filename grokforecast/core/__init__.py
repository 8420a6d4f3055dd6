"""The backend-neutral stopping policy: decisions, the study model, and the rule itself.

Pure Python and numpy (and the forecaster): nothing here imports torch, Optuna or Ray.
The Optuna pruner and the Ray Tune scheduler (:mod:`grokforecast.backends`) translate
their protocols into :class:`~grokforecast.core.policy.StoppingPolicy` and back; the
trial's :class:`~grokforecast.history.History` and the study's
:mod:`~grokforecast.vocabulary` sit below it.
"""
