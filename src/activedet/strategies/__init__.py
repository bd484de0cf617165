"""Selection strategies: a plain name -> class dict."""
from .base import Strategy
from .cdal import CDALStrategy
from .coreset import CoresetStrategy
from .ebal import EBALStrategy
from .entropy import EntropyStrategy
from .ll4al import LL4ALStrategy
from .mgral import MGRALStrategy
from .miaod import MIAODStrategy
from .random import RandomStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    "random": RandomStrategy,
    "entropy": EntropyStrategy,
    "coreset": CoresetStrategy,
    "miaod": MIAODStrategy,
    # baselines of the MI-AOD and MGRAL papers
    "ll4al": LL4ALStrategy,
    "cdal": CDALStrategy,
    "ebal": EBALStrategy,
    # MGRAL: LSTM agent trained by policy gradient on a lookup table of proxy mAPs (activedet.mgral)
    "mgral": MGRALStrategy,
}


def resolve(name: str, params: dict) -> tuple[str, dict]:
    """(registered strategy, its options) for a strategy or a variant name of ``params['variants']``."""
    variant = params.get("variants", {}).get(name)
    if variant is not None:
        base = variant["strategy"]
        return base, {**params["strategies"].get(base, {}), **variant.get("options", {})}
    if name not in STRATEGIES:
        from ..io import InputError

        known = sorted(STRATEGIES) + sorted(params.get("variants", {}))
        raise InputError(f"unknown strategy {name!r} (known: {', '.join(known)})")
    return name, params["strategies"].get(name, {})


def build_strategy(name: str, params: dict) -> Strategy:
    base, options = resolve(name, params)
    return STRATEGIES[base](options)


__all__ = ["STRATEGIES", "Strategy", "build_strategy", "resolve"]
