"""Ray Tune integration: the forecast as a Tune scheduler, Optuna sampling with true states.

Importing this package imports Ray; ``import grokforecast`` and the Optuna path never do.
"""

from grokforecast.errors import GrokforecastError

try:
    import ray.tune  # noqa: F401
except ImportError:  # pragma: no cover - exercised in an environment without Ray
    raise GrokforecastError(
        "Ray Tune is not installed; install it with: pip install 'grokforecast[ray]'"
    ) from None

from grokforecast.raytune.scheduler import GrokForecastScheduler
from grokforecast.raytune.searcher import StudySearcher

__all__ = ["GrokForecastScheduler", "StudySearcher"]
