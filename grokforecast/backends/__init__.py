"""The two backends that run a sweep's trials, each a thin adapter over the core.

- :mod:`grokforecast.backends.optuna`: Optuna workers; :class:`~grokforecast.HjorthPruner`
  and the :class:`~grokforecast.Monitor` for one's own Optuna projects.
- :mod:`grokforecast.backends.ray`: Ray Tune; the ``GrokForecastScheduler`` for one's own
  Tune experiments. Imported only when asked for: ``import grokforecast`` never imports Ray.

Both translate their protocols into the one stopping policy
(:mod:`grokforecast.core.policy`) and run the one trial lifecycle
(:mod:`grokforecast.sweep.lifecycle`); neither imports the other.
"""
