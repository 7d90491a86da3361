"""Realistic traffic for the two reference models, with scheduled problems.

`ad_score` is a regression model (score 0-100) and `account_health` a binary classifier. Each
scenario changes one thing the monitor must notice: `drift` shifts the features named in
`DRIFTED_FEATURES` (and nothing else), `performance_drop` breaks the relation between features
and outcome (concept drift: the scores look as before, the outcomes do not follow them),
`fairness_gap` lowers the scores of one group, `latency_regression` slows inference.
`covariate_shift` moves the inputs towards cases the model finds hard with their relation to
the outcome intact (the classifier's towards its decision boundary; the regression's towards
`stories` ads, whose outcomes are noisier), so estimated performance should track the realised
drop, and `correlation_change` flips the correlation of ad_score's `ad_length` and
`bid` (+0.7 to -0.7) with their marginals unchanged: only a multivariate test can see it.
Labels arrive after a delay, and some never do.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from exporter.config import ModelConfig
from exporter.logging.prediction_logger import PredictionLogger
from exporter.rows import Rows, from_dataframe

log = logging.getLogger(__name__)

AD_SCORE = "ad_score"
ACCOUNT_HEALTH = "account_health"
SCENARIOS = (
    "stable",
    "drift",
    "performance_drop",
    "fairness_gap",
    "latency_regression",
    "covariate_shift",
    "correlation_change",
)
CORRELATION = 0.7  # of ad_length and bid (Gaussian copula); flipped by `correlation_change`
KINDS = {AD_SCORE: "regression", ACCOUNT_HEALTH: "binary_classification"}
FEATURE_TYPES = {
    AD_SCORE: {
        "ctr_history": "numeric",
        "ad_length": "numeric",
        "sentiment_score": "numeric",
        "bid": "numeric",
        "placement": "categorical",
        "device": "categorical",
    },
    ACCOUNT_HEALTH: {
        "spend_trend": "numeric",
        "days_since_login": "numeric",
        "support_tickets": "numeric",
        "plan": "categorical",
    },
}
DRIFTED_FEATURES = {
    AD_SCORE: ("ctr_history", "sentiment_score", "placement"),
    ACCOUNT_HEALTH: ("spend_trend", "plan"),
}
UNFAIR_GROUP = {AD_SCORE: ("age_group", "55+"), ACCOUNT_HEALTH: ("region", "apac")}

AGE_GROUPS = np.array(["18-24", "25-34", "35-44", "45-54", "55+"])
GENDERS = np.array(["female", "male", "nonbinary"])
LOCATIONS = np.array(["urban", "suburban", "rural"])
LANGUAGES = np.array(["en", "es", "fr", "de"])
PLACEMENTS = np.array(["feed", "sidebar", "search", "stories"])
DEVICES = np.array(["mobile", "desktop", "tablet"])
PLANS = np.array(["free", "basic", "pro", "enterprise"])
REGIONS = np.array(["na", "emea", "apac", "latam"])


def reference_model(name: str, **settings: Any) -> ModelConfig:
    """Reference model `name` as a config of its own (table `t`, classifier score column
    `score`), `settings` on top: what notebooks, benchmarks and tests fold batches with."""
    source = {"table": "t", **({"score_column": "score"} if name == ACCOUNT_HEALTH else {})}
    raw = {"model_id": name, "kind": KINDS[name], "source": source}
    return ModelConfig.model_validate(raw | {"features": FEATURE_TYPES[name]} | settings)


def _pick(
    rng: np.random.Generator, values: np.ndarray, n: int, p: list[float] | None = None
) -> np.ndarray:
    return values[rng.choice(len(values), size=n, p=p)]


@dataclass
class Batch:
    """One model's generated rows: features, attributes, outputs and the true outcome."""

    features: dict[str, np.ndarray]
    attributes: dict[str, np.ndarray]
    prediction: np.ndarray
    score: np.ndarray | None
    actual: np.ndarray
    latency: np.ndarray

    def rows(self, model: ModelConfig, labels: bool = True) -> Rows:
        """These rows as the exporter parses them for `model`; `labels=False` holds the
        outcomes back, as a window before its labels arrive."""
        frame = pd.DataFrame({**self.features, **self.attributes})
        actual = self.actual if labels else None
        return from_dataframe(model, frame, self.prediction, actual, self.score)


def ad_score_batch(rng: np.random.Generator, n: int, scenario: str) -> Batch:
    drift = scenario == "drift"
    ctr = rng.beta(2, 30, n) * (2.0 if drift else 1.0)
    sentiment = np.clip(rng.normal(-0.3 if drift else 0.2, 0.3, n), -1, 1)
    # ad_length ~ Gamma(4, 20) and bid ~ LogNormal(0.5, 0.4), coupled through a Gaussian copula.
    rho = -CORRELATION if scenario == "correlation_change" else CORRELATION
    z1 = rng.standard_normal(n)
    z2 = rho * z1 + np.sqrt(1 - rho * rho) * rng.standard_normal(n)
    ad_length = 20 * special.gammaincinv(4, special.ndtr(z1))
    bid = np.exp(0.5 + 0.4 * z2)
    stories_heavy = drift or scenario == "covariate_shift"
    placement = _pick(
        rng, PLACEMENTS, n, [0.1, 0.1, 0.2, 0.6] if stories_heavy else [0.5, 0.2, 0.2, 0.1]
    )
    device = _pick(rng, DEVICES, n, [0.6, 0.3, 0.1])
    truth = (
        20 + 600 * ctr + 15 * sentiment - 0.05 * ad_length + 8 * bid + 10 * (placement == "feed")
    )
    # Stories ads are harder to score: more of their outcome is noise the model cannot see.
    actual = np.clip(truth + rng.normal(0, 1, n) * np.where(placement == "stories", 10, 4), 0, 100)
    prediction = np.clip(truth + rng.normal(0, 3, n), 0, 100)
    if scenario == "performance_drop":  # the world changed, the model did not
        actual = np.clip(truth * 0.6 + 25 + rng.normal(0, 12, n), 0, 100)
    attributes = {
        "age_group": _pick(rng, AGE_GROUPS, n, [0.15, 0.3, 0.25, 0.18, 0.12]),
        "gender": _pick(rng, GENDERS, n, [0.48, 0.48, 0.04]),
        "location_type": _pick(rng, LOCATIONS, n, [0.5, 0.35, 0.15]),
        "language": _pick(rng, LANGUAGES, n, [0.6, 0.2, 0.1, 0.1]),
    }
    attributes["value_tier"] = np.where(
        prediction >= 60, "high_value", np.where(prediction >= 35, "medium_value", "low_value")
    )
    if scenario == "fairness_gap":
        column, group = UNFAIR_GROUP[AD_SCORE]
        prediction = np.where(attributes[column] == group, prediction * 0.5, prediction)
    return Batch(
        features={
            "ctr_history": ctr,
            "ad_length": ad_length,
            "sentiment_score": sentiment,
            "bid": bid,
            "placement": placement,
            "device": device,
        },
        attributes=attributes,
        prediction=prediction,
        score=None,
        actual=actual,
        latency=_latency(rng, n, scenario),
    )


def account_health_batch(rng: np.random.Generator, n: int, scenario: str) -> Batch:
    drift = scenario == "drift"
    if scenario == "covariate_shift":  # nearer the boundary: fewer easy cases, same relation
        spend_trend, days = rng.normal(0.6, 0.6, n), rng.exponential(6, n)
    else:
        spend_trend, days = rng.normal(-0.8 if drift else 0.0, 1.0, n), rng.exponential(12, n)
    tickets = rng.poisson(1.2, n).astype(float)
    plan = _pick(rng, PLANS, n, [0.1, 0.2, 0.3, 0.4] if drift else [0.4, 0.3, 0.2, 0.1])
    region = _pick(rng, REGIONS, n, [0.4, 0.3, 0.2, 0.1])
    logit = -1.0 - 0.9 * spend_trend + 0.06 * days + 0.4 * tickets - 0.5 * (plan == "enterprise")
    # The model sees more than is logged (the noise); its score is over-confident by a fixed
    # factor, so a calibration map is needed, and the outcome depends on the inputs only
    # through the score, so that map holds under covariate shift.
    seen = logit + rng.normal(0, 0.3, n)
    score = np.clip(1 / (1 + np.exp(-seen)), 0, 1)
    p_true = 1 / (1 + np.exp(-0.8 * seen))
    if scenario == "performance_drop":
        p_true = 1 / (1 + np.exp(-(-0.5 + 0.9 * spend_trend - 0.06 * days + 1.0)))
    actual = (rng.random(n) < p_true).astype(float)
    language = _pick(rng, LANGUAGES, n, [0.6, 0.2, 0.1, 0.1])
    if scenario == "fairness_gap":
        _, group = UNFAIR_GROUP[ACCOUNT_HEALTH]
        score = np.where(region == group, np.minimum(1.0, score + 0.35), score)
    return Batch(
        features={
            "spend_trend": spend_trend,
            "days_since_login": days,
            "support_tickets": tickets,
            "plan": plan,
        },
        attributes={"region": region, "language": language},
        prediction=(score >= 0.5).astype(float),
        score=score,
        actual=actual,
        latency=_latency(rng, n, scenario),
    )


def _latency(rng: np.random.Generator, n: int, scenario: str) -> np.ndarray:
    base = rng.lognormal(np.log(0.02), 0.4, n)
    return base * (8.0 if scenario == "latency_regression" else 1.0)


GENERATORS: dict[str, Callable[[np.random.Generator, int, str], Batch]] = {
    AD_SCORE: ad_score_batch,
    ACCOUNT_HEALTH: account_health_batch,
}


@dataclass(frozen=True)
class LabelDelay:
    """Labels arrive between `low` and `high` seconds later; `missing` of them never."""

    low: float = 30.0
    high: float = 120.0
    missing: float = 0.1


def parse_schedule(text: str) -> list[tuple[str, float]]:
    """`stable=120,drift=180` -> [("stable", 120.0), ("drift", 180.0)]."""
    phases = []
    for part in text.split(","):
        name, _, seconds = part.partition("=")
        if name.strip() not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; use one of {', '.join(SCENARIOS)}")
        phases.append((name.strip(), float(seconds)))
    return phases


class Simulator:
    """Writes traffic through a PredictionLogger, the way serving code would."""

    def __init__(
        self,
        logger: PredictionLogger,
        models: dict[str, str],
        rate: float = 20.0,
        delay: LabelDelay = LabelDelay(),
        seed: int = 7,
    ) -> None:
        self.logger = logger
        self.models = models  # generator name -> model_id in the config
        self.rate = rate
        self.delay = delay
        self.rng = np.random.default_rng(seed)
        self._labels: list[
            tuple[float, str, str, float]
        ] = []  # heap of (due, model_id, id, actual)
        self.scenario = "stable"

    def emit(self, now: float, n: int, scenario: str, timestamps: np.ndarray | None = None) -> None:
        """Log `n` predictions per model and schedule their labels."""
        for name, model_id in self.models.items():
            batch = GENERATORS[name](self.rng, n, scenario)
            stamps = np.full(n, now) if timestamps is None else timestamps
            for i in range(n):
                pid = self.logger.log_prediction(
                    model_id,
                    {k: _plain(v[i]) for k, v in batch.features.items()},
                    float(batch.prediction[i]),
                    score=None if batch.score is None else float(batch.score[i]),
                    latency_seconds=float(batch.latency[i]),
                    timestamp=float(stamps[i]),
                    attributes={k: str(v[i]) for k, v in batch.attributes.items()},
                )
                if self.rng.random() >= self.delay.missing:
                    due = stamps[i] + self.rng.uniform(self.delay.low, self.delay.high)
                    heapq.heappush(
                        self._labels, (float(due), model_id, pid, float(batch.actual[i]))
                    )

    def deliver_labels(self, now: float) -> int:
        delivered = 0
        while self._labels and self._labels[0][0] <= now:
            due, model_id, pid, actual = heapq.heappop(self._labels)
            self.logger.log_actual(model_id, pid, actual, timestamp=due)
            delivered += 1
        return delivered

    def seed_reference(self, start: float, end: float, rows: int) -> None:
        """Stable history in [start, end), labelled, for baselines."""
        stamps = np.sort(self.rng.uniform(start, end, rows))
        self.emit(end, rows, "stable", timestamps=stamps)
        self.deliver_labels(end + self.delay.high)
        self.logger.flush()

    def run(
        self,
        schedule: list[tuple[str, float]],
        stop: threading.Event,
        loop: bool = True,
        tick: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Emit live traffic phase by phase until `stop` is set (or the schedule ends)."""
        while not stop.is_set():
            for scenario, seconds in schedule:
                self.scenario = scenario
                log.info("simulator: scenario %s for %gs", scenario, seconds)
                phase_end = clock() + seconds
                carry = 0.0
                while not stop.is_set() and clock() < phase_end:
                    carry += self.rate * tick
                    n, carry = int(carry), carry - int(carry)
                    now = clock()
                    if n:
                        self.emit(
                            now, n, scenario, timestamps=np.sort(now - self.rng.uniform(0, tick, n))
                        )
                    self.deliver_labels(now)
                    stop.wait(tick)
                if stop.is_set():
                    break
            if not loop:
                break


def _plain(value: object) -> object:
    """numpy scalars -> Python values the database driver understands."""
    return value.item() if isinstance(value, np.generic) else value
