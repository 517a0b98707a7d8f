"""Read the server's ``/metrics`` into snapshots whose differences are a window's figures.

The benchmark takes one snapshot before a load and one after, so counters and histograms
give what happened in between (rates, mean batch sizes, histogram quantiles) without
reading a running total that earlier loads also fed.
"""

from __future__ import annotations

import math
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Snapshot = dict[tuple[str, Labels], float]


def scrape(http_url: str, timeout: float = 10.0) -> Snapshot:
    """Every sample of the server's metrics, keyed by (sample name, sorted labels)."""
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    snapshot: Snapshot = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            snapshot[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return snapshot


def total(snapshot: Snapshot, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in snapshot.items() if n == name and wanted <= set(ls))


def delta(before: Snapshot, after: Snapshot, name: str, **labels: str) -> float:
    """How much a counter (or a histogram's ``_sum`` / ``_count``) grew between snapshots."""
    return total(after, name, **labels) - total(before, name, **labels)


def bucket_deltas(
    before: Snapshot, after: Snapshot, histogram: str, **labels: str
) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram's observations between snapshots."""
    bounds = sorted(
        {float(dict(ls)["le"]) for (n, ls) in after if n == f"{histogram}_bucket"},
    )
    name = f"{histogram}_bucket"
    return [(le, delta(before, after, name, le=_le_text(le), **labels)) for le in bounds]


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """``histogram_quantile`` as Prometheus computes it: linear within the bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound, as Prometheus
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def _le_text(bound: float) -> str:
    # prometheus_client writes bucket bounds as floatToGoString does: "0.01", "1.0", "+Inf".
    return "+Inf" if math.isinf(bound) else repr(bound)
