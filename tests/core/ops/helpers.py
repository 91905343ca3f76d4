"""Reading /metrics the way Prometheus does (its own text parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition: (name, labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value (0 when the series does not exist yet)."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def series(text: str, name: str) -> list[dict[str, str]]:
    """The label sets of every sample of ``name``."""
    return [dict(labels) for (n, labels) in samples(text) if n == name]
