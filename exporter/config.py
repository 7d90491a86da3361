"""One YAML file -> validated configuration objects.

Every knob of the exporter lives here, so an error can name the key path, the bad value and the
fix before anything starts. Label values exported to Prometheus (models, features, segments,
protected attributes) come only from this file or from bounded sets derived from it, which is
what keeps cardinality low by construction.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

CONFIG_ENV = "MODEL_MONITOR_CONFIG"
STORE_URL_ENV = "MODEL_MONITOR_STORE_URL"
ALERTMANAGER_URL_ENV = "MODEL_MONITOR_ALERTMANAGER_URL"
DEFAULT_CONFIG_PATH = Path("model-monitor.yml")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LABEL_VALUE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


class ConfigError(ValueError):
    """A configuration problem, phrased for the person who has to fix the file."""


def parse_duration(value: Any) -> float:
    """Accept Prometheus-style durations ("90s", "5m", "1h", "7d") or plain seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h or 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip())
        if not match:
            raise ValueError(f"{value!r} is not a duration; write it like 30s, 5m, 1h or 7d")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureConfig(_Strict):
    """One input feature: how to read it and how to bin it."""

    type: Literal["numeric", "categorical"] = Field(
        description="`numeric` (quantile-binned) or `categorical` (category frequencies)."
    )
    column: str | None = Field(None, description="Column holding it; defaults to the feature name.")
    valid_range: tuple[float, float] | None = Field(
        None,
        description="Numeric only: values outside [low, high] count as out of range "
        "(default: outside the baseline's observed range).",
    )


class LabelSource(_Strict):
    """Where the actual outcomes (labels) come from; they usually arrive late."""

    table: str | None = Field(
        None,
        description="Separate label table joined on the prediction id; omit to read "
        "`column` from the predictions table itself.",
    )
    prediction_id_column: str = Field(
        "prediction_id", description="Label table column holding the prediction id."
    )
    column: str = Field(
        "actual", description="Column holding the actual value (0/1 for a classifier)."
    )
    arrival_column: str | None = Field(
        "labeled_at",
        description="Column ordering label arrivals (timestamp or increasing number). Required "
        "for a separate table; for a same-table column, omit it to read only labels already "
        "present when the prediction is read.",
    )


class SourceMapping(_Strict):
    """Maps the exporter onto an existing predictions table, with the user's own column names."""

    table: str = Field(description="Predictions table (optionally `schema.table`).")
    id_column: str = Field(
        "prediction_id", description="Unique prediction id, used to join labels."
    )
    timestamp_column: str = Field(
        "created_at", description="Prediction time (DATETIME, or epoch seconds as a number)."
    )
    prediction_column: str = Field("prediction", description="The model's output value.")
    score_column: str | None = Field(
        None, description="Classifier probability of the positive class (binary_classification)."
    )
    latency_column: str | None = Field(None, description="Inference latency of the prediction.")
    latency_unit: Literal["seconds", "milliseconds"] = Field(
        "seconds", description="Unit of `latency_column`."
    )
    model_column: str | None = Field(
        None,
        description="For a table shared by several models: only rows whose value here "
        "equals `model_value` (default: the model_id) are read.",
    )
    model_value: str | None = Field(None, description="Value of `model_column` for this model.")
    labels: LabelSource | None = Field(None, description="Where labels come from; omit if none.")


class WindowConfig(_Strict):
    length: Duration = Field(description="How far back the window reaches.")
    bucket: Duration = Field(
        description="Width of one time bucket; eviction happens bucket by bucket."
    )

    @model_validator(mode="after")
    def _bucket_count(self) -> WindowConfig:
        if self.bucket < 1 or not float(self.bucket).is_integer():
            raise ValueError(f"bucket ({self.bucket:g}s) must be a whole number of seconds")
        count = self.length / self.bucket
        if abs(count - round(count)) > 1e-9:
            raise ValueError(
                f"length ({self.length:g}s) must be a whole number of buckets "
                f"({self.bucket:g}s); pick a bucket that divides the length"
            )
        if not 1 <= round(count) <= 5000:
            raise ValueError(
                f"length/bucket gives {round(count)} buckets; keep it between 1 and 5000 "
                "(widen the bucket for long windows)"
            )
        return self

    @property
    def buckets(self) -> int:
        return round(self.length / self.bucket)


class DriftThresholds(_Strict):
    """Effect-size thresholds; a feature drifts when one is exceeded (see docs/statistics.md)."""

    psi: float | None = Field(0.05, ge=0, description="Population stability index.")
    js_distance: float | None = Field(
        None, ge=0, le=1, description="Jensen-Shannon distance (base 2)."
    )
    kl_divergence: float | None = Field(None, ge=0, description="KL(current || baseline), nats.")
    ks_statistic: float | None = Field(
        0.05, ge=0, le=1, description="Kolmogorov-Smirnov D (numeric features only)."
    )
    wasserstein_normalized: float | None = Field(
        None, ge=0, description="Wasserstein-1 distance / baseline standard deviation."
    )


class PerformanceConfig(_Strict):
    classification_threshold: float = Field(
        0.5, gt=0, lt=1, description="Score at or above which a classifier predicts 1."
    )
    degradation_warning: float = Field(
        0.1, ge=0, description="Relative degradation vs baseline that is a warning (0.1 = 10%)."
    )
    degradation_critical: float = Field(
        0.25, ge=0, description="Relative degradation vs baseline that is critical."
    )
    alpha: float = Field(
        0.005,
        gt=0,
        lt=1,
        description="A metric counts as degraded only when it is worse than the baseline "
        "beyond sampling noise at this family-wise level (Bonferroni over the metrics): a small "
        "window's chance dip is not a finding.",
    )


class EstimationConfig(_Strict):
    """Performance estimated before the labels arrive (docs/estimation.md)."""

    enabled: bool = Field(
        True,
        description="Classifier: estimate ROC AUC, accuracy, precision, recall and F1 of the "
        "window from its scores and the baseline's calibration map (CBPE). Regression: "
        "estimate MAE and RMSE from models of the expected loss learned on the baseline (DLE).",
    )
    min_reference_labels: int = Field(
        500,
        ge=50,
        description="Labelled baseline rows (of both classes, for a classifier) needed to learn "
        "the calibration map or the loss models; with fewer, nothing is estimated.",
    )
    max_disagreement: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="Classifier: once labels arrive, realised accuracy differing from the "
        "accuracy estimated for the same rows by more than this, and beyond sampling noise "
        "(performance.alpha), means the estimate's assumption broke: concept drift.",
    )
    max_relative_disagreement: float = Field(
        0.1,
        gt=0,
        description="Regression: the same for MAE, as a share of the MAE estimated for the "
        "labelled rows (0.1 = 10%).",
    )


class MultivariateConfig(_Strict):
    """Drift of the numeric features taken together (docs/estimation.md)."""

    enabled: bool = Field(
        True,
        description="PCA reconstruction error of the standardised numeric features "
        "(needs two or more numeric features).",
    )
    variance_share: float = Field(
        0.65,
        gt=0,
        lt=1,
        description="Principal components kept: the fewest explaining this share of the "
        "reference's variance (NannyML's default), and at most one fewer than the numeric "
        "features, so that every row keeps a distance from them to measure.",
    )
    min_relative_change: float = Field(
        0.1,
        gt=0,
        description="The window's mean reconstruction error must differ from the reference's by "
        "more than this share (0.1 = 10%) for a drift verdict, and beyond sampling noise.",
    )
    alpha: float = Field(
        0.005,
        gt=0,
        lt=1,
        description="Chance that a window of the reference's own distribution gets a "
        "multivariate drift verdict (two-sided, from the reference's chunk-to-chunk spread).",
    )


class SegmentConfig(_Strict):
    column: str = Field(description="Column whose values define the segments.")
    values: list[str] | None = Field(
        None,
        description="Segment values to report; default: the baseline's most frequent "
        "(at most `max_values`). Others are pooled as `other`.",
    )
    max_values: int = Field(
        10, ge=1, le=50, description="Bound on segments taken from the baseline."
    )


_PREDICATE = re.compile(
    r"^\s*(?P<feature>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>.+?)\s*$"
)
_BASELINE_QUANTILE = re.compile(r"^baseline\.p(?P<q>\d{1,2}(?:\.\d+)?)$")


class SliceConfig(_Strict):
    """An edge-case slice: the labelled predictions matching one predicate."""

    name: str = Field(description="Label value `segment` of the slice's performance series.")
    where: str = Field(
        description="`<feature> <op> <value>` with op one of > >= < <= == !=; the value is a "
        "number, a category, or `baseline.pNN` (the feature's NN-th baseline percentile), "
        "e.g. `days_since_login > 60` or `bid > baseline.p99`."
    )

    @field_validator("name")
    @classmethod
    def _label_safe(cls, value: str) -> str:
        if not _LABEL_VALUE.match(value) or value in ("all", "other"):
            raise ValueError(
                "use letters, digits, `_`, `.`, `:` or `-` (not `all` or `other`: the exporter's "
                "own values of the `segment` label)"
            )
        return value

    @field_validator("where")
    @classmethod
    def _predicate(cls, value: str) -> str:
        match = _PREDICATE.match(value)
        if not match:
            raise ValueError("write the predicate as `<feature> <op> <value>`, e.g. `bid > 2.5`")
        quantile = _BASELINE_QUANTILE.match(match["value"])
        if quantile and not 0 <= float(quantile["q"]) <= 100:
            raise ValueError("baseline percentiles go from baseline.p0 to baseline.p100")
        return value

    @property
    def parts(self) -> tuple[str, str, str]:
        match = _PREDICATE.match(self.where)
        assert match is not None
        return match["feature"], match["op"], match["value"].strip("'\"")


class FairnessConfig(_Strict):
    """How protected groups are compared (docs/statistics.md, Fairness)."""

    regression_cutoff: float | None = Field(
        None,
        description="Regression only: an output at or above this counts as selected, "
        "for demographic parity (without it, only the mean prediction ratio is compared).",
    )
    min_group_size: int = Field(
        30,
        ge=1,
        description="Groups with fewer predictions (or, for label-based metrics, "
        "labelled predictions) are left out of the comparison and counted.",
    )
    max_groups: int = Field(
        10,
        ge=2,
        le=50,
        description="Groups per attribute taken from the baseline when "
        "`groups` does not list them; the rest pool as `other` (reported, never compared).",
    )
    groups: dict[str, list[str]] = Field(
        default_factory=dict, description="Per protected attribute, the groups to compare."
    )
    four_fifths: float = Field(
        0.8,
        gt=0,
        le=1,
        description="A parity ratio (selection rates, or mean outputs of a regression) below "
        "this is a fairness violation, when beyond sampling noise.",
    )
    max_residual_bias: float = Field(
        0.5,
        gt=0,
        description="Regression: a group whose mean error (prediction - actual) differs from "
        "the other groups' by more than this many residual standard deviations is a violation, "
        "when beyond sampling noise.",
    )
    max_error_ratio: float = Field(
        1.25,
        gt=1,
        description="Regression: the worst-served group's RMSE above this multiple of the "
        "best-served group's is a violation, when beyond sampling noise.",
    )
    alpha: float = Field(
        0.005,
        gt=0,
        lt=1,
        description="A gap counts only when chance would produce it with probability below "
        "this (Bonferroni over the pairs or groups compared): small groups' noise is not a "
        "violation.",
    )


class QualityThresholds(_Strict):
    """Data-quality ratios above which the health report raises a `data_quality` finding."""

    missing_ratio: float = Field(
        0.1, ge=0, le=1, description="Share of rows with the feature missing."
    )
    type_error_ratio: float = Field(
        0.01, ge=0, le=1, description="Share of rows with a non-number."
    )
    out_of_range_ratio: float = Field(0.05, ge=0, le=1, description="Share of values out of range.")
    new_category_ratio: float = Field(0.05, ge=0, le=1, description="Share of unseen categories.")


class AlertThresholds(_Strict):
    """Thresholds the alert rules compare with (exported as `model_alert_threshold_ratio` and
    `model_alert_threshold_seconds`)."""

    latency_p99_seconds: float = Field(
        0.5, gt=0, description="p99 inference latency above this pages chat."
    )
    min_label_coverage: float = Field(
        0.3, ge=0, le=1, description="Label coverage below this means labels are delayed."
    )
    volume_drop_ratio: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="Prediction rate below this share of the last hour's is a drop.",
    )
    rejected_ratio: float = Field(
        0.01, ge=0, le=1, description="Share of rows rejected that alerts."
    )


class RetrainingConfig(_Strict):
    """Explicit retraining triggers (docs/retraining.md)."""

    important_features: list[str] | None = Field(
        None, description="Features whose drift counts towards retraining (default: all)."
    )
    drifted_share: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Share of the important features drifting that asks for "
        "retraining (medium urgency).",
    )
    prediction_drift: bool = Field(
        True, description="Drift of the output asks for retraining (medium)."
    )
    fairness_violation: bool = Field(
        True, description="A fairness violation asks for retraining (medium)."
    )
    estimated_performance: bool = Field(
        True,
        description="Estimated performance (before labels) worse than baseline beyond noise "
        "asks for retraining: low from degradation_warning, medium from degradation_critical.",
    )
    concept_drift: bool = Field(
        True,
        description="Realised accuracy departing from the estimate for the same rows (the "
        "scores no longer mean what they did) asks for retraining (medium).",
    )
    multivariate_drift: bool = Field(
        True, description="Multivariate drift of the numeric features asks for retraining (medium)."
    )
    min_label_coverage: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Below this label coverage, drift without performance "
        "evidence is a `low` urgency reason: too few labels to judge.",
    )
    cooldown: Duration = Field(
        86400, description="After a recorded retraining, only high urgency recommends another."
    )
    recommend_from: Literal["low", "medium", "high"] = Field(
        "medium", description="Lowest urgency at which `should_retrain` is true."
    )


class ModelConfig(_Strict):
    model_id: str = Field(description="Label value `model_id` on every series of this model.")
    kind: Literal["regression", "binary_classification"] = Field(
        description="What the model predicts."
    )
    source: SourceMapping
    features: dict[str, FeatureConfig] = Field(
        description="Input features by name; `name: numeric` is short for `name: {type: numeric}`."
    )
    segments: list[SegmentConfig] = Field(default_factory=list, description="Performance segments.")
    slices: list[SliceConfig] = Field(
        default_factory=list,
        description="Edge-case slices whose performance is reported like a segment.",
    )
    protected_attributes: list[str] = Field(
        default_factory=list, description="Columns of protected attributes, for fairness."
    )
    fairness: FairnessConfig = Field(default_factory=FairnessConfig)
    quality: QualityThresholds = Field(default_factory=QualityThresholds)
    alerts: AlertThresholds = Field(default_factory=AlertThresholds)
    retraining: RetrainingConfig = Field(default_factory=RetrainingConfig)
    drift_window: WindowConfig = Field(
        default_factory=lambda: WindowConfig(length=3600, bucket=60),
        description="Window for drift and data quality (default 1h in 1m buckets).",
    )
    performance_window: WindowConfig = Field(
        default_factory=lambda: WindowConfig(length=7 * 86400, bucket=3600),
        description="Window for performance, by prediction time (default 7d in 1h buckets).",
    )
    thresholds: DriftThresholds = Field(default_factory=DriftThresholds)
    feature_thresholds: dict[str, DriftThresholds] = Field(
        default_factory=dict,
        description="Per-feature overrides: keys set here replace those of `thresholds` for that "
        "feature, e.g. `{ad_length: {psi: 0.3}}`.",
    )
    performance: PerformanceConfig = Field(default_factory=PerformanceConfig)
    estimation: EstimationConfig = Field(default_factory=EstimationConfig)
    multivariate: MultivariateConfig = Field(default_factory=MultivariateConfig)
    min_samples: int = Field(
        100,
        ge=1,
        description="Fewer window rows than this give no drift verdict (visible as "
        "`model_window_predictions`).",
    )
    min_labeled: int = Field(
        30, ge=1, description="Fewer labelled rows give no performance numbers."
    )
    drift_alpha: float = Field(
        0.005,
        gt=0,
        lt=1,
        description="Chance that a window without drift gets any drift verdict "
        "(split over the features and the output tested, Bonferroni).",
    )

    @property
    def numeric_features(self) -> tuple[str, ...]:
        """The numeric features in config order: the columns of correlations and PCA."""
        return tuple(n for n, f in self.features.items() if f.type == "numeric")

    @property
    def categorical_features(self) -> tuple[str, ...]:
        return tuple(n for n, f in self.features.items() if f.type == "categorical")

    @field_validator("features", mode="before")
    @classmethod
    def _short_features(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("model_id")
    @classmethod
    def _label_safe(cls, value: str) -> str:
        if not _LABEL_VALUE.match(value):
            raise ValueError("use letters, digits, `_`, `.`, `:` or `-`, starting with a letter")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if not self.features:
            raise ValueError("declare at least one feature under `features`")
        if self.kind == "binary_classification" and not self.source.score_column:
            raise ValueError(
                "a binary_classification model needs `source.score_column` (the probability "
                "of class 1) for ROC AUC, log loss and Brier score"
            )
        for item in self.slices:
            feature, op, value = item.parts
            if feature not in self.features:
                raise ValueError(
                    f"slice {item.name!r} uses {feature!r}, which is not in `features`"
                )
            if self.features[feature].type == "categorical" and op not in ("==", "!="):
                raise ValueError(f"slice {item.name!r}: a categorical feature takes == or != only")
            if self.features[feature].type == "numeric" and not _BASELINE_QUANTILE.match(value):
                try:
                    float(value)
                except ValueError:
                    raise ValueError(
                        f"slice {item.name!r}: {value!r} is neither a number nor baseline.pNN"
                    ) from None
        names = [s.name for s in self.slices]
        if len(set(names)) != len(names):
            raise ValueError("slice names must be unique")
        important = set(self.retraining.important_features or []) - set(self.features)
        if important:
            raise ValueError(
                f"retraining.important_features names {sorted(important)}, not in `features`"
            )
        stray = set(self.fairness.groups) - set(self.protected_attributes)
        if stray:
            raise ValueError(
                f"fairness.groups names {sorted(stray)}, not in `protected_attributes`"
            )
        unknown = set(self.feature_thresholds) - set(self.features)
        if unknown:
            raise ValueError(
                f"feature_thresholds names {sorted(unknown)}, which are not in `features`"
            )
        return self

    def feature_column(self, name: str) -> str:
        return self.features[name].column or name

    def thresholds_for(self, feature: str | None) -> DriftThresholds:
        """The model's thresholds with the feature's overrides laid over them (None: the output)."""
        override = self.feature_thresholds.get(feature) if feature is not None else None
        if override is None:
            return self.thresholds
        return self.thresholds.model_copy(update=override.model_dump(exclude_unset=True))


class StoreTimeouts(_Strict):
    """Every wait on the store is bounded, well inside Prometheus' default 10s scrape timeout."""

    connect: Duration = Field(
        3.0, description="Give up opening a connection (PostgreSQL `connect_timeout`) after this."
    )
    statement: Duration = Field(
        5.0,
        description="Give up on one statement after this: PostgreSQL `statement_timeout` on the "
        "server, and the exporter breaks a connection that hangs longer on the client side; "
        "SQLite's busy timeout.",
    )

    @field_validator("connect")
    @classmethod
    def _whole_seconds(cls, value: float) -> float:
        if value < 1:
            raise ValueError("libpq counts connect_timeout in whole seconds; give at least 1s")
        return value


class StoreConfig(_Strict):
    url: str = Field(
        "sqlite:///var/model-monitor.db",
        description="SQLAlchemy URL of the prediction store. Relative SQLite paths are taken "
        f"from the config file's folder; an in-memory SQLite database is refused (each thread "
        f"would open its own, empty). `{STORE_URL_ENV}` overrides it.",
    )
    url_file: Path | None = Field(
        None, description="File holding the URL (for a URL with a password); wins over `url`."
    )
    timeouts: StoreTimeouts = Field(default_factory=StoreTimeouts)
    bulk_reads: Literal["copy", "rows"] = Field(
        "copy",
        description="How PostgreSQL pages of a rebuild or a backlog, after the first, are "
        "read. `copy`: as CSV from `COPY (query) TO STDOUT`, typed by Arrow off the GIL (twice "
        "as fast, and overlapping the fold on a second core), wherever every column's type "
        "reads back to the driver's value; `rows`: always as the driver's rows. Other stores "
        "are read as rows (docs/architecture.md, Bulk pages).",
    )
    push_down: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Rebuild a model's drift window from sums the database computes (`GROUP "
        "BY` bucket: counts, bins, tail and correlation sums) instead of reading its rows. "
        "`auto`: on for DuckDB (`duckdb:///` URLs: an analytical engine, where the sums took "
        "about as long as the rows at a million rows and scale past the exporter's memory), off "
        "for SQLite and PostgreSQL (the rows 8-14x faster; docs/performance.md, Push-down). "
        "Models whose drift needs Python per row (estimation, multivariate drift) and labels "
        "read with their predictions are rebuilt from rows; so is a model whose sums exceed "
        "`timeouts.statement`.",
    )


class ExporterConfig(_Strict):
    max_read_seconds: Duration = Field(
        60.0,
        description="Longest one refresh of a model reads new rows. No cap on the rate: at any "
        "scrape interval up to this a refresh reads for as long as the new rows take, so a "
        "steady rate the CPU can read never falls behind; a backlog beyond it (after an outage) "
        "is taken by the next refreshes, each showing its progress as "
        "`model_monitor_ingest_lag_seconds`.",
    )
    batch_rows: int = Field(10_000, ge=100, description="Rows per SQL round trip.")
    min_refresh_interval: Duration = Field(
        1.0, description="Scrapes closer together than this share one refresh."
    )
    read_lag: Duration = Field(
        1.0,
        description="Rows newer than now minus this are left for the next scrape: most "
        "transactions have committed by then, so fewer rows come in late.",
    )
    late_rows_lookback: Duration = Field(
        30.0,
        description="On every refresh the store's row counts per time slice over this span "
        "behind the read position are compared with the rows counted; where the store has more "
        "(a transaction that committed late), the missing rows are fetched and counted.",
    )
    reconcile_interval: Duration = Field(
        300.0,
        description="The same comparison sweeps the whole window once per this interval, a "
        "share at each refresh, so a row inserted late with any time inside the window (or "
        "without a time) is counted within it. Each refresh counts its share of the window's "
        "rows in the store (one indexed count; per time slice only where it differs from the "
        "rows counted), so the cost grows with the window; a long count runs on a second "
        "connection while the refresh reads (docs/architecture.md). Shorter finds back-filled "
        "rows sooner.",
    )
    scrape_timeout: Duration = Field(
        10.0,
        description="Time a scrape may take when the request has no "
        "`X-Prometheus-Scrape-Timeout-Seconds` header; past it (less a margin) the last good "
        "numbers are served while the refresh goes on.",
    )
    history_interval: Duration = Field(
        300,
        description="How often each model's summary is written to the metrics store "
        "(history without Prometheus).",
    )
    latency_buckets: list[float] = Field(
        default_factory=lambda: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
        description="Upper bounds (seconds) of the inference latency histogram.",
    )

    @field_validator("latency_buckets")
    @classmethod
    def _sorted(cls, value: list[float]) -> list[float]:
        if not value or sorted(set(value)) != value:
            raise ValueError("give a strictly increasing, non-empty list of seconds")
        return value


class AlertingConfig(_Strict):
    """Where `AlertManager.send_alert` (the Python API) posts alerts."""

    alertmanager_url: str = Field(
        "http://127.0.0.1:9093",
        description=f"Alertmanager base URL; `{ALERTMANAGER_URL_ENV}` overrides it.",
    )
    timeout: Duration = Field(5.0, description="Give up on Alertmanager after this long.")
    resolve_after: Duration = Field(
        3600, description="endsAt of alerts sent from the Python API: they resolve unless re-sent."
    )


class Config(_Strict):
    store: StoreConfig = Field(default_factory=StoreConfig)
    exporter: ExporterConfig = Field(default_factory=ExporterConfig)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    models: list[ModelConfig] = Field(description="The models to monitor.")

    @model_validator(mode="after")
    def _unique_models(self) -> Config:
        ids = [m.model_id for m in self.models]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"model_id values must be unique; repeated: {duplicates}")
        return self

    def model(self, model_id: str) -> ModelConfig:
        for model in self.models:
            if model.model_id == model_id:
                return model
        known = ", ".join(m.model_id for m in self.models)
        raise ConfigError(f"no model {model_id!r} in the config; configured: {known}")


def _key_path(loc: tuple[Any, ...], raw: Any) -> str:
    """Render a pydantic location as the YAML key path, using model ids instead of indexes."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and item < len(node) and isinstance(node[item], dict):
                model_id = node[item].get("model_id")
                if model_id:
                    label = f"[{item}] (model_id={model_id})"
            parts.append(label)
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(f".{item}" if parts else str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def _fix_for(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "add this key"
    if kind == "extra_forbidden":
        return "remove it or check its spelling against docs/config.md"
    if kind == "literal_error":
        return "use one of the allowed values"
    return "see docs/config.md for the expected form"


def format_validation_error(exc: ValidationError, raw: Any, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for error in exc.errors():
        path = _key_path(tuple(error["loc"]), raw)
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        shown = "" if error["type"] == "missing" else f" (got {value!r})"
        lines.append(f"  {path}: {message}{shown}; fix: {_fix_for(error)}")
    return "\n".join(lines)


_M = TypeVar("_M", bound=BaseModel)


def load_yaml_model(path: Path, model: type[_M], what: str) -> _M:
    """A YAML file validated as `model`: an unreadable file or a wrong key is a ConfigError
    that names the file, the key and the fix (`what`: the file's role, for the message)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, raw, str(path))) from None


def parse_config(raw: Any, source: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate an already-parsed YAML document."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with a `models:` list")
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, raw, source)) from None
    return _resolve_store(config, base_dir or Path.cwd())


def _resolve_store(config: Config, base_dir: Path) -> Config:
    url = os.environ.get(STORE_URL_ENV) or config.store.url
    if config.store.url_file is not None:
        path = (
            config.store.url_file
            if config.store.url_file.is_absolute()
            else base_dir / config.store.url_file
        )
        try:
            url = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"store.url_file: cannot read {path} ({exc.strerror}); fix the path"
            ) from None
    in_memory = url == "sqlite://" or ":memory:" in url or "mode=memory" in url
    if url.startswith("sqlite") and in_memory:
        key = (
            "store.url_file"
            if config.store.url_file is not None
            else STORE_URL_ENV
            if os.environ.get(STORE_URL_ENV)
            else "store.url"
        )
        raise ConfigError(
            f"{key}: {url!r} is an in-memory SQLite database, which each thread's connection "
            "opens anew and empty, and the exporter reads from several threads (refreshes, "
            "pages read ahead, reconciliation counts); fix: use a file, e.g. "
            "sqlite:///var/model-monitor.db"
        )
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        url = prefix + str((base_dir / url[len(prefix) :]).resolve())
    return config.model_copy(update={"store": config.store.model_copy(update={"url": url})})


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate the config file (default: $MODEL_MONITOR_CONFIG or ./model-monitor.yml)."""
    path = Path(path) if path is not None else default_config_path()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}; pass --config or set {CONFIG_ENV}"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(raw, str(path), path.resolve().parent)
