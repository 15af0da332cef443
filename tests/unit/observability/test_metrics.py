"""Every metric is in docs/metrics.md, and the Grafana dashboard uses only real ones."""

from __future__ import annotations

import asyncio
import json
import re

from prometheus_client.parser import text_string_to_metric_families

from modelserve.observability import ModelSample, Observability
from tests.conftest import ROOT
from tests.unit.observability.metric_samples import record_requests


def test_every_metric_is_documented_and_the_dashboard_uses_only_real_ones() -> None:
    observability = Observability()
    observability.watch_models(lambda: [ModelSample("m", "1", "READY", 0, 0, 1.0)])
    record_requests(observability)
    body, _ = asyncio.run(observability.exposition())
    kinds = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    families = set(kinds)
    docs = (ROOT / "docs" / "metrics.md").read_text()
    ours = {n for n in families if n.startswith("modelserve_") and not n.endswith("_created")}
    assert len(ours) == 16
    for name in ours:
        shown = f"{name}_total" if kinds[name] == "counter" else name
        assert f"`{shown}`" in docs, f"{shown} is not in docs/metrics.md"
    dashboard = (ROOT / "deploy" / "grafana" / "modelserve-dashboard.json").read_text()
    exprs = [
        target["expr"]
        for panel in json.loads(dashboard)["panels"]
        for target in panel.get("targets", [])
    ]
    used = {name for expr in exprs for name in re.findall(r"\b((?:modelserve|process)_\w+)", expr)}
    known = {f"{n}{s}" for n in families for s in ("", "_total", "_bucket", "_sum", "_count")}
    assert used and used <= known, used - known
