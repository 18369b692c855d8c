"""The ops files: Prometheus alert rules and the Grafana dashboard, checked by promtool.

promtool comes from Debian's prometheus package, which ``make test`` installs where missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

OPS = Path(__file__).resolve().parents[2] / "ops"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="no promtool: `make promtool` installs it")

# What `pfd metrics` serves (actors.platform.metrics), and Dramatiq's own series.
SERVED = {"pfd_queue_messages", "pfd_queue_workers", "pfd_jobs_total", "pfd_job_duration_seconds_bucket",
          "pfd_worker_processes", "dramatiq_messages_inprogress", "dramatiq_message_errors_total"}


def _check_rules(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_the_alert_rules_pass_promtool_and_name_only_served_metrics():
    checked = _check_rules(OPS / "prometheus" / "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {rule["alert"] for rule in rules} == {
        "PfdBacklogGrowing", "PfdFailureRateHigh", "PfdNoWorkerOnQueue", "PfdDeadLettersOverThreshold"}
    for rule in rules:
        assert any(metric in rule["expr"] for metric in SERVED), rule["alert"]


def test_every_grafana_panel_query_is_valid_promql_over_served_metrics(tmp_path):
    dashboard = json.loads((OPS / "grafana" / "pfd-actors.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 8
    # promtool checks expressions inside rule files: each query becomes a recording rule.
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"pfd:panel_{i}", "expr": expr}
                                                        for i, expr in enumerate(exprs)]}]}
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = _check_rules(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for expr in exprs:
        assert any(metric in expr for metric in SERVED), expr
