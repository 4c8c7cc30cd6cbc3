"""Spending budgets per day and month, global and per key, user and tag.

See :mod:`llmrelay.budget.budgets` for how a call is reserved, settled and released, and
:mod:`llmrelay.budget.counters` for where the counters live.
"""

from llmrelay.budget.budgets import BudgetPolicy, Budgets, Hold
from llmrelay.budget.counters import (
    COUNTERS,
    Counters,
    MemoryCounters,
    RedisCounters,
    SqliteCounters,
)
from llmrelay.budget.limits import BudgetLimit, Calendar, Who
from llmrelay.errors import BudgetExceeded

__all__ = ["COUNTERS", "BudgetExceeded", "BudgetLimit", "BudgetPolicy", "Budgets",
           "Calendar", "Counters", "Hold", "MemoryCounters", "RedisCounters", "SqliteCounters",
           "Who"]  # fmt: skip
