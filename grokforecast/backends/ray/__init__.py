"""The Ray Tune backend: the stopping policy as a Tune scheduler, Optuna sampling with
true states, and the sweep's trainable.

Importing this package imports Ray; ``import grokforecast`` and the Optuna backend never do.
"""

from grokforecast.errors import GrokforecastError

try:
    import ray.tune  # noqa: F401
except ImportError:  # pragma: no cover - exercised in an environment without Ray
    raise GrokforecastError(
        "Ray Tune is not installed; install it with: pip install 'grokforecast[ray]'"
    ) from None

from grokforecast.backends.ray.scheduler import GrokForecastScheduler
from grokforecast.backends.ray.searcher import StudySearcher

__all__ = ["GrokForecastScheduler", "StudySearcher"]
