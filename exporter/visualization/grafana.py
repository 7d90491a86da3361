"""Grafana dashboards as code (grafanalib): the models overview and the model detail.

Every query works for both model kinds (metric names chosen by regex where they differ), so no
panel is empty for a classifier or a regressor; a test evaluates every expression against a real
Prometheus. Datasources are referenced as {"type": "prometheus", "uid": "${datasource}"}.
"""

from __future__ import annotations

import json
from typing import Any

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from exporter.metric_catalog import ESTIMATED_METRICS
from exporter.mixin import MixinConfig

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
OVERVIEW_UID = "model-monitor-overview"
DETAIL_UID = "model-monitor-detail"
J = 'job=~"$job"'
M = f'{J},model_id="$model_id"'
RATE = "$__rate_interval"  # Grafana's: at least four scrape intervals, whatever the step
PREDICTIONS_PER_S = "suffix: predictions/s"
# One unit per axis: Grafana draws an axis per unit, so metrics of different units that share a
# panel (per model kind: RMSE with R², accuracy with log loss) get axes of their own.
PERFORMANCE_UNITS = {
    "rmse": "short",  # the target's unit
    "mae": "short",
    "r2": "percentunit",  # share of variance explained
    "roc_auc": "percentunit",
    "accuracy": "percentunit",
    "precision": "percentunit",
    "recall": "percentunit",
    "f1": "percentunit",
    "log_loss": "suffix: nats",
    "brier_score": "none",  # squared probability error
}
PERFORMANCE = "|".join(PERFORMANCE_UNITS)
ESTIMATED = "|".join(ESTIMATED_METRICS)
ROWS_PER_S = "suffix: rows/s"


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> g.Target:
    return g.Target(
        expr=expr, legendFormat=legend, refId=ref, instant=instant, datasource=DATASOURCE
    )


def _thresholds(*steps: tuple[str, float | None]) -> list[g.Threshold]:
    return [
        g.Threshold(color, index, float(value) if value is not None else 0.0)
        for index, (color, value) in enumerate(steps)
    ]


class Layout:
    """Places panels left to right on Grafana's 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.x = self.y = 0
        self.row_height = 0
        self.next_id = 1
        self.panels: list[Any] = []

    def row(self, title: str) -> None:
        self.newline()
        self.panels.append(
            g.RowPanel(title=title, gridPos=g.GridPos(h=1, w=24, x=0, y=self.y), id=self._id())
        )
        self.y += 1

    def add(self, panel: Any, w: int = 12, h: int = 8) -> None:
        if self.x + w > 24:
            self.newline()
        panel.gridPos = g.GridPos(h=h, w=w, x=self.x, y=self.y)
        panel.id = self._id()
        panel.dataSource = DATASOURCE
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def newline(self) -> None:
        if self.x:
            self.y += self.row_height
        self.x, self.row_height = 0, 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def timeseries(
    title: str,
    description: str,
    targets: list[g.Target],
    unit: str = "none",
    thresholds: list[g.Threshold] | None = None,
    **kw: Any,
) -> g.TimeSeries:
    return g.TimeSeries(
        title=title,
        description=description,
        targets=targets,
        unit=unit,
        thresholds=thresholds or _thresholds(("green", None)),
        thresholdsStyleMode="line" if thresholds else "off",
        legendDisplayMode="table",
        legendPlacement="bottom",
        **kw,
    )


def unit_overrides(units: dict[str, str]) -> list[dict[str, Any]]:
    """Field overrides giving each series whose name ends in `_<metric>` its metric's unit."""
    return [
        {
            "matcher": {"id": "byRegexp", "options": f".*_{metric}$"},
            "properties": [{"id": "unit", "value": unit}],
        }
        for metric, unit in units.items()
    ]


def stat(
    title: str,
    description: str,
    expr: str,
    unit: str = "none",
    legend: str = "{{model_id}}",
    thresholds: list[g.Threshold] | None = None,
    links: list[dict[str, Any]] | None = None,
) -> g.Stat:
    panel = g.Stat(
        title=title,
        description=description,
        targets=[target(expr, legend, instant=True)],
        format=unit,
        thresholds=thresholds or _thresholds(("green", None)),
        reduceCalc="lastNotNull",
        graphMode="none",
        textMode="value_and_name",
        colorMode="background",
    )
    if links:
        panel.extraJson = {"fieldConfig": {"defaults": {"links": links}}}
    return panel


def _query_variable(name: str, label: str, query: str, everything: bool = False) -> g.Template:
    """A variable from a `label_values` query; `everything`: several values or All at once."""
    return g.Template(
        name=name,
        label=label,
        dataSource=DATASOURCE,
        type="query",
        refresh=2,
        query=query,
        includeAll=everything,
        multi=everything,
    )


def _variables(detail: bool, mixin: MixinConfig) -> g.Templating:
    variables = [
        g.Template(name="datasource", label="Data source", query="prometheus", type="datasource"),
        _query_variable(
            "job",
            "Job",
            f"label_values(model_monitor_build_info{{{mixin.job_selector}}}, job)",
            everything=True,
        ),
        _query_variable(
            "model_id",
            "Model",
            f"label_values(model_monitor_up{{{J}}}, model_id)",
            everything=not detail,
        ),
    ]
    if detail:
        for name, query in (
            ("feature", f"label_values(model_feature_psi{{{M}}}, feature)"),
            ("attribute", f"label_values(model_fairness_violation{{{M}}}, attribute)"),
            ("segment", f"label_values(model_segment_labeled_predictions{{{M}}}, segment)"),
        ):
            variables.append(_query_variable(name, name.capitalize(), query))
    return g.Templating(list=variables)


def _dashboard(
    title: str, uid: str, description: str, layout: Layout, detail: bool, mixin: MixinConfig
) -> g.Dashboard:
    return g.Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=mixin.dashboard_tags,
        timezone="utc",
        panels=layout.panels,
        templating=_variables(detail, mixin),
        refresh="30s",
        time=g.Time("now-6h", "now"),
        editable=False,
        schemaVersion=39,
        links=[
            g.DashboardLink(
                title="Runbooks", uri=mixin.runbook_url_base, type="link", targetBlank=True
            ),
            g.DashboardLink(
                title="Model monitor",
                tags=mixin.dashboard_tags,
                type="dashboards",
                asDropdown=True,
                includeVars=False,
                keepTime=True,
            ),
        ],
    )


DETAIL_LINK = [
    {
        "title": "Model detail: ${__field.labels.model_id}",
        "url": f"/d/{DETAIL_UID}?var-model_id=${{__field.labels.model_id}}&${{__url_time_range}}",
    }
]


def overview_dashboard(mixin: MixinConfig) -> g.Dashboard:
    lay = Layout()
    sel = f'{J},model_id=~"$model_id"'
    lay.add(
        stat(
            "Health",
            "Status of each model (healthy, warning, critical); click for its detail.",
            f"max by (model_id, model_health_status) (model_health_status{{{sel}}} == 1) * 0 + 1",
            legend="{{model_id}}: {{model_health_status}}",
            links=DETAIL_LINK,
        ),
        w=8,
        h=5,
    )
    lay.add(
        stat(
            "Firing alerts",
            "Alerts firing per model (0 when none).",
            f'count by (model_id) (ALERTS{{alertstate="firing",{sel}}}) '
            f"or count by (model_id) (model_monitor_up{{{sel}}}) * 0",
            thresholds=_thresholds(("green", None), ("red", 1)),
            links=DETAIL_LINK,
        ),
        w=8,
        h=5,
    )
    lay.add(
        stat(
            "Retraining recommended",
            "1 when the retraining triggers recommend retraining.",
            f"max by (model_id) (model_retraining_recommended{{{sel}}})",
            thresholds=_thresholds(("green", None), ("orange", 1)),
            links=DETAIL_LINK,
        ),
        w=8,
        h=5,
    )
    lay.add(
        stat(
            "Prediction rate",
            "Predictions per second over 5 minutes.",
            f"sum by (model_id) (job_model_id:model_predictions:rate5m{{{sel}}})",
            unit=PREDICTIONS_PER_S,
            links=DETAIL_LINK,
        ),
        w=6,
        h=5,
    )
    lay.add(
        stat(
            "Label coverage",
            "Labelled share of the predictions in the performance window.",
            f"max by (model_id) (model_label_coverage_ratio{{{sel}}})",
            unit="percentunit",
            thresholds=_thresholds(("red", None), ("orange", 0.1), ("green", 0.3)),
            links=DETAIL_LINK,
        ),
        w=6,
        h=5,
    )
    lay.add(
        stat(
            "p99 latency",
            "99th percentile of inference latency over 5 minutes.",
            f"max by (model_id) (job_model_id:model_prediction_latency_seconds:p99_5m{{{sel}}})",
            unit="s",
            links=DETAIL_LINK,
        ),
        w=6,
        h=5,
    )
    lay.add(
        stat(
            "Drifted features",
            "Features with a drift verdict, out of those monitored.",
            f"max by (model_id) (model_drifted_features{{{sel}}})",
            thresholds=_thresholds(("green", None), ("orange", 1)),
            links=DETAIL_LINK,
        ),
        w=6,
        h=5,
    )
    lay.add(
        timeseries(
            "Prediction rate",
            "Predictions per second logged by each model.",
            [
                target(
                    f"sum by (model_id) (job_model_id:model_predictions:rate5m{{{sel}}})",
                    "{{model_id}}",
                )
            ],
            unit=PREDICTIONS_PER_S,
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Health over time",
            "1 warning, 2 critical, 0 healthy.",
            [
                target(
                    f'max by (model_id) (model_health_status{{{sel},model_health_status="warning"}}) '
                    f'+ 2 * max by (model_id) (model_health_status{{{sel},model_health_status="critical"}})',
                    "{{model_id}}",
                )
            ],
            thresholds=_thresholds(("green", None), ("orange", 1), ("red", 2)),
        ),
        w=12,
    )
    return _dashboard(
        "Model monitor: overview",
        OVERVIEW_UID,
        "Every monitored model at a glance; each stat links to the model's detail.",
        lay,
        False,
        mixin,
    )


def detail_dashboard(mixin: MixinConfig) -> g.Dashboard:
    lay = Layout()
    lay.row("Performance")
    lay.add(
        timeseries(
            "Performance vs baseline",
            "Overall metrics on labelled predictions, with the baseline's; one axis per unit "
            "(error in the target's unit, shares, nats).",
            [
                target(
                    f'{{__name__=~"model_performance_({PERFORMANCE})",{M},segment="all"}}',
                    "{{__name__}}",
                ),
                target(
                    f'{{__name__=~"model_baseline_performance_({PERFORMANCE})",{M},segment="all"}}',
                    "baseline {{__name__}}",
                    "B",
                ),
            ],
            overrides=unit_overrides(PERFORMANCE_UNITS),
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Degradation vs baseline",
            "Relative change in the bad direction; lines: warning and "
            "critical thresholds from the config.",
            [
                target(f"model_performance_degradation_ratio{{{M}}}", "{{metric}}"),
                target(
                    f'model_alert_threshold_ratio{{{M},threshold=~"degradation_.*"}}',
                    "{{threshold}}",
                    "B",
                ),
            ],
            unit="percentunit",
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Estimated vs realised",
            "Estimated before labels over the drift window (classifier: CBPE from the scores "
            "and the baseline's calibration; regression: DLE from the baseline's loss models); "
            "realised on labelled predictions; the baseline's. One axis per unit.",
            [
                target(
                    f'{{__name__=~"model_estimated_performance_({ESTIMATED})",{M}}}',
                    "estimated {{__name__}}",
                ),
                target(
                    f'{{__name__=~"model_performance_({ESTIMATED})",{M},segment="all"}}',
                    "realised {{__name__}}",
                    "B",
                ),
                target(
                    f'{{__name__=~"model_baseline_performance_({ESTIMATED})",{M},segment="all"}}',
                    "baseline {{__name__}}",
                    "C",
                ),
            ],
            overrides=unit_overrides(PERFORMANCE_UNITS),
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Realised minus estimated",
            "Accuracy or MAE on the same labelled rows: near 0 while the estimate's assumption "
            "holds; the verdict series is 1 when the gap is beyond its limit and noise "
            "(concept drift).",
            [
                target(
                    f'{{__name__=~"model_estimated_performance_(accuracy|mae)_gap",{M}}}',
                    "{{__name__}}",
                ),
                target(
                    f"model_estimated_performance_disagreement{{{M}}}",
                    "verdict {{metric}}",
                    "B",
                ),
            ],
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Per segment and slice",
            "The model's main metric per segment and edge-case slice.",
            [
                target(
                    f'{{__name__=~"model_performance_(rmse|roc_auc)",{M},segment!="all"}}',
                    "{{segment}}",
                )
            ],
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Labelled predictions",
            "What the performance numbers stand on.",
            [
                target(f"model_window_labeled_predictions{{{M}}}", "labelled"),
                target(f"model_performance_window_predictions{{{M}}}", "all predictions", "B"),
            ],
        ),
        w=12,
    )
    lay.row("Data drift")
    lay.add(
        timeseries(
            "Feature drift (PSI)",
            "PSI of each feature; line: the effective threshold.",
            [
                target(f"model_feature_psi{{{M}}}", "{{feature}}"),
                target(f"max(model_feature_psi_threshold{{{M}}})", "threshold", "B"),
            ],
        ),
        w=12,
    )
    heatmap = g.Heatmap(
        title="Drift heatmap (feature x time)",
        description="PSI per feature over time.",
        targets=[target(f"model_feature_psi{{{M}}}", "{{feature}}")],
        dataFormat="tsbuckets",
    )
    heatmap.extraJson = {
        "type": "heatmap",
        "options": {"calculate": False, "yAxis": {"axisPlacement": "left"}},
    }
    lay.add(heatmap, w=12)
    lay.add(
        g.BarGauge(
            title="Distribution of $feature: baseline vs current",
            description="Share of values per PSI bin (numeric bins named by the baseline "
            "percentiles they span; edges in the health report).",
            targets=[
                target(
                    f'model_feature_bin_ratio{{{M},feature="$feature"}}',
                    "{{bin}} {{window}}",
                    instant=True,
                )
            ],
            orientation="horizontal",
            displayMode="basic",
            format="percentunit",
            min=0,
            max=1,
        ),
        w=12,
        h=10,
    )
    lay.add(
        g.Table(
            title="Drift verdicts",
            description="1: drifted; absent: too few rows for a verdict.",
            targets=[target(f"model_feature_drift_detected{{{M}}}", "{{feature}}", instant=True)],
            transformations=[{"id": "reduce", "options": {"reducers": ["lastNotNull"]}}],
        ),
        w=12,
        h=10,
    )
    lay.add(
        timeseries(
            "Data quality",
            "Missing, type-error, out-of-range and new-category ratios.",
            [
                target(
                    f'{{__name__=~"model_feature_(missing|type_error|out_of_range|new_category)_ratio",{M}}}',
                    "{{feature}} {{__name__}}",
                )
            ],
            unit="percentunit",
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Correlation drift",
            "Largest change of a feature-pair correlation vs baseline.",
            [target(f"model_feature_correlation_drift{{{M}}}", "largest change")],
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Multivariate drift (PCA reconstruction error)",
            "Mean reconstruction error of the window's numeric features, the baseline's, and "
            "the bounds it must leave for a verdict (docs/estimation.md).",
            [
                target(f"model_multivariate_reconstruction_error{{{M}}}", "window"),
                target(f"model_baseline_multivariate_reconstruction_error{{{M}}}", "baseline", "B"),
                target(
                    f"model_multivariate_reconstruction_error_threshold{{{M}}}", "{{bound}}", "C"
                ),
            ],
        ),
        w=12,
    )
    lay.row("Prediction distribution")
    lay.add(
        timeseries(
            "Output drift",
            "Drift of the model's output vs the baseline.",
            [
                target(f"model_prediction_psi{{{M}}}", "PSI"),
                target(f"model_prediction_js_distance{{{M}}}", "JS distance", "B"),
            ],
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Output drift verdict",
            "1 when the output drifted.",
            [target(f"model_prediction_drift_detected{{{M}}}", "verdict")],
            thresholds=_thresholds(("green", None), ("red", 1)),
        ),
        w=12,
    )
    lay.row("Fairness")
    lay.add(
        timeseries(
            "Parity ratio per attribute",
            "Demographic parity ratio (mean prediction ratio for a "
            "regression without a cut-off); line: four-fifths.",
            [
                target(
                    f"model_fairness_demographic_parity_ratio{{{M}}} "
                    f"or model_fairness_mean_prediction_ratio{{{M}}}",
                    "{{attribute}}",
                ),
                target(
                    f'model_alert_threshold_ratio{{{M},threshold="four_fifths"}}',
                    "four-fifths",
                    "B",
                ),
            ],
            thresholds=_thresholds(("red", None), ("green", 0.8)),
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Groups of $attribute",
            "Selection rate per group, or mean prediction without one.",
            [
                target(
                    f'model_group_selection_rate{{{M},attribute="$attribute"}} '
                    f'or model_group_mean_prediction{{{M},attribute="$attribute"}}',
                    "{{group}}",
                )
            ],
        ),
        w=12,
    )
    lay.row("Error analysis")
    lay.add(
        g.Table(
            title="Worst segments first",
            description="Error per segment and slice, worst first.",
            targets=[
                target(
                    f'sort_desc({{__name__=~"model_performance_(rmse|log_loss)",{M},segment!="all"}})',
                    "{{segment}}",
                    instant=True,
                )
            ],
            transformations=[{"id": "reduce", "options": {"reducers": ["lastNotNull"]}}],
        ),
        w=12,
        h=10,
    )
    lay.add(
        timeseries(
            "Error of $segment",
            "The segment's error over time, with its labelled count.",
            [
                target(
                    f'{{__name__=~"model_performance_(rmse|log_loss)",{M},segment="$segment"}}',
                    "{{__name__}}",
                ),
                target(
                    f'model_segment_labeled_predictions{{{M},segment="$segment"}}', "labelled", "B"
                ),
            ],
            overrides=[
                *unit_overrides({m: PERFORMANCE_UNITS[m] for m in ("rmse", "log_loss")}),
                {
                    "matcher": {"id": "byFrameRefID", "options": "B"},
                    "properties": [{"id": "unit", "value": "suffix: predictions"}],
                },
            ],
        ),
        w=12,
        h=10,
    )
    lay.row("Resource utilization")
    lay.add(
        timeseries(
            "Exporter CPU",
            "CPU seconds per second of the exporter process.",
            [target(f"rate(process_cpu_seconds_total{{{J}}}[{RATE}])", "{{instance}}")],
            unit="percentunit",
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Exporter memory",
            "Resident memory of the exporter process.",
            [target(f"process_resident_memory_bytes{{{J}}}", "{{instance}}")],
            unit="bytes",
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Refresh duration",
            "Time the last refresh of the model took.",
            [target(f"model_monitor_refresh_duration_seconds{{{M}}}", "refresh")],
            unit="s",
        ),
        w=8,
    )
    lay.add(
        timeseries(
            "Rows rejected",
            "Rejected rows per second, by reason.",
            [
                target(
                    f"sum by (reason) (rate(model_monitor_rows_rejected_total{{{M}}}[{RATE}]))",
                    "{{reason}}",
                )
            ],
            unit=ROWS_PER_S,
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Inference latency",
            "Quantiles of the latency logged with predictions; line: threshold.",
            [
                target(
                    f"histogram_quantile({q}, sum by (le) (rate(model_prediction_latency_seconds_bucket{{{M}}}[{RATE}])))",
                    f"p{int(q * 100)}",
                    ref,
                )
                for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))
            ]
            + [
                target(
                    f'model_alert_threshold_seconds{{{M},threshold="latency_p99"}}',
                    "p99 threshold",
                    "D",
                )
            ],
            unit="s",
        ),
        w=12,
    )
    return _dashboard(
        "Model monitor: model detail",
        DETAIL_UID,
        "One model: performance, data drift, prediction distribution, fairness, error "
        "analysis and resource utilization.",
        lay,
        True,
        mixin,
    )


def to_json(dashboard: g.Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (what `generate-dashboard` would write)."""
    return json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder))


def expressions(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of a dashboard's JSON, variables left in."""
    out = []
    for panel in model["panels"]:
        for t in panel.get("targets", []):
            if t.get("expr"):
                out.append((panel["title"], t["expr"]))
    return out
