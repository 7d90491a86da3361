"""AlertManager: the seed's `send_alert`, posting to Prometheus Alertmanager's v2 API.

Alerts from notebooks and batch jobs join the same routing as the rule-based ones (severity
label: `high`/`critical` findings page, `medium`/`warning` go to chat, the rest to email). It
never raises: an unreachable Alertmanager is a failed status within the configured timeout.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any

import requests

from exporter.config import ALERTMANAGER_URL_ENV, AlertingConfig, ConfigError, load_config

log = logging.getLogger(__name__)
SEVERITY = {
    "critical": "critical",
    "high": "critical",
    "error": "critical",
    "warning": "warning",
    "medium": "warning",
    "info": "info",
    "low": "info",
}


class AlertManager:
    def __init__(self, url: str | None = None, settings: AlertingConfig | None = None) -> None:
        if settings is None:
            try:
                settings = load_config().alerting
            except ConfigError:
                settings = AlertingConfig()
        self.settings = settings
        self.url = (
            url or os.environ.get(ALERTMANAGER_URL_ENV) or settings.alertmanager_url
        ).rstrip("/")

    def send_alert(
        self, level: str, model_id: str, findings: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """One Alertmanager alert per finding; returns {"status": "sent"|"failed", ...}."""
        now = dt.datetime.now(dt.UTC)
        ends = now + dt.timedelta(seconds=self.settings.resolve_after)
        alerts = [
            {
                "labels": {
                    "alertname": "ModelMonitorFinding",
                    "model_id": model_id,
                    "severity": SEVERITY.get(
                        finding.get("severity", level), SEVERITY.get(level, "warning")
                    ),
                    "finding_type": str(finding.get("type", "unknown")),
                    "source": "python_api",
                },
                "annotations": {
                    "summary": f"{model_id}: {finding.get('type', 'finding')} ({level})",
                    "description": str(finding.get("description", "")),
                },
                "startsAt": now.isoformat(),
                "endsAt": ends.isoformat(),
            }
            for finding in findings
        ]
        try:
            response = requests.post(
                f"{self.url}/api/v2/alerts", json=alerts, timeout=self.settings.timeout
            )
            response.raise_for_status()
        except requests.RequestException as exc:
            log.warning(
                "sending %d alerts for %s to %s failed: %s", len(alerts), model_id, self.url, exc
            )
            return {"status": "failed", "alerts": len(alerts), "error": str(exc)}
        return {"status": "sent", "alerts": len(alerts)}
