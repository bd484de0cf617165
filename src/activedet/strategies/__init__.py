"""Selection strategies: a plain name -> class dict."""
from .base import Strategy
from .coreset import CoresetStrategy
from .entropy import EntropyStrategy
from .miaod import MIAODStrategy
from .random import RandomStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    "random": RandomStrategy,
    "entropy": EntropyStrategy,
    "coreset": CoresetStrategy,
    "miaod": MIAODStrategy,
}


def build_strategy(name: str, params: dict) -> Strategy:
    if name not in STRATEGIES:
        from ..io import InputError

        raise InputError(f"unknown strategy {name!r} (known: {', '.join(sorted(STRATEGIES))})")
    return STRATEGIES[name](params["strategies"].get(name, {}))


__all__ = ["STRATEGIES", "Strategy", "build_strategy"]
