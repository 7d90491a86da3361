"""Model monitors, the system monitor and the retraining scheduler (the seed's `monitors`)."""

from exporter.lazy_exports import lazy

_EXPORTS = {
    "AccountHealthMonitor": "exporter.monitors.account_health_monitor",
    "AdScoreModelMonitor": "exporter.monitors.ad_score_monitor",
    "ModelMonitor": "exporter.monitors.model_monitor",
    "RetrainingScheduler": "exporter.monitors.retraining_scheduler",
    "SystemMonitor": "exporter.monitors.system_monitor",
}
__getattr__ = lazy(_EXPORTS)
__all__ = list(_EXPORTS)
