"""Model analytics: every request recorded, then asked which deployment serves a task best.

- :class:`AnalyticsSink` (``observe.analytics:``) writes one row per routed request and
  per cache hit — group, deployment, task, tokens, cost, answer time, outcome — to SQLite
  or PostgreSQL, in batches, off the request's path; an optional evaluator scores answers.
- :class:`Analytics` reads them back: :meth:`~Analytics.stats` per deployment (and task),
  :meth:`~Analytics.feedback` to score an answer after the fact, and
  :meth:`~Analytics.best_model_for` a task by cost, speed or quality.
- :class:`LearnedBalancer` orders a group's deployments from those figures.
- ``llmrelay report`` prints them as a table, JSON or charts.
"""

from llmrelay.analytics.best import choose
from llmrelay.analytics.learned import LearnedBalancer, LearnedSettings
from llmrelay.analytics.queries import Analytics, Choice, DeploymentStats, SeriesPoint
from llmrelay.analytics.records import AttemptRow, FeedbackRow, RequestRow, row_of
from llmrelay.analytics.settings import AnalyticsSettings
from llmrelay.analytics.sink import AnalyticsSink, Evaluator, load_evaluator, open_sink
from llmrelay.analytics.store import PostgresStore, SqliteStore, Store, open_store

__all__ = [
    "Analytics",
    "AnalyticsSettings",
    "AnalyticsSink",
    "AttemptRow",
    "Choice",
    "DeploymentStats",
    "Evaluator",
    "FeedbackRow",
    "LearnedBalancer",
    "LearnedSettings",
    "PostgresStore",
    "RequestRow",
    "SeriesPoint",
    "SqliteStore",
    "Store",
    "choose",
    "load_evaluator",
    "open_sink",
    "open_store",
    "row_of",
]
