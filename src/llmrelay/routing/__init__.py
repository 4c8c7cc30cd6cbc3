"""Routing policies: fallback order, context fit, load balancing, circuit breakers."""

from llmrelay.routing.balance import BALANCERS, Balancer, balancer
from llmrelay.routing.breaker import BreakerConfig, BreakerState, CircuitBreaker
from llmrelay.routing.candidate import Candidate
from llmrelay.routing.policy import POLICIES, FallbackPolicy, ModelGroup, fallback_policy

__all__ = [
    "BALANCERS",
    "POLICIES",
    "Balancer",
    "BreakerConfig",
    "BreakerState",
    "Candidate",
    "CircuitBreaker",
    "FallbackPolicy",
    "ModelGroup",
    "balancer",
    "fallback_policy",
]
