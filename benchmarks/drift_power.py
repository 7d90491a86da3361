"""False alarms and power of the drift verdict with the project's default thresholds.

A model with 50 features (40 numeric of five shapes, 10 categorical) and a baseline of 20,000
rows per feature. For windows of 200, 2,000 and 200,000 rows:

- false alarms: 200 stationary windows (drawn from the baseline's population); a window counts
  if *any* feature gets a verdict. Target: at most 1% of windows.
- power: a 0.25-standard-deviation mean shift in one normal feature, and one category whose
  share moves from 10% to 20%. Target: a verdict in at least 95% of windows of 2,000+ rows.

Window counts are drawn exactly from the population (multinomial over the baseline's bins, with
the true bin probabilities), which is what the window would hold, without generating 10^9 rows.
The verdict is the exporter's own (`drift.feature_drift.compare`).

    python benchmarks/drift_power.py [--windows 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats

from exporter.baseline import CategoricalReference, NumericReference
from exporter.config import ModelConfig, parse_config
from exporter.drift.feature_drift import compare
from exporter.report import per_test_alpha

BASELINE_ROWS = 20_000
SIZES = (200, 2_000, 200_000)


@dataclass(frozen=True)
class Feature:
    name: str
    ref: NumericReference | CategoricalReference
    probabilities: np.ndarray  # true probability of each bin under no drift

    def __post_init__(self) -> None:  # rounding can leave -1e-17 or a sum of 1 + 1e-16
        p = np.clip(self.probabilities, 0, None)
        object.__setattr__(self, "probabilities", p / p.sum())


def continuous(dist: stats.rv_continuous, ref: NumericReference) -> np.ndarray:
    cdf = dist.cdf(ref.edges)
    return np.concatenate([[cdf[0]], np.diff(cdf), [1 - cdf[-1]]])


def discrete(dist: stats.rv_discrete, ref: NumericReference) -> np.ndarray:
    support = np.arange(0, int(dist.ppf(1 - 1e-12)) + 1, dtype=float)
    return np.bincount(ref.bin(support), weights=dist.pmf(support), minlength=ref.n_bins)


def categorical(shares: np.ndarray, ref: CategoricalReference, names: list[str]) -> np.ndarray:
    index = dict(zip(names, shares, strict=True))
    probs = np.array([index.get(c, 0.0) for c in ref.categories])
    return np.append(probs, 1 - probs.sum())


def build_features(rng: np.random.Generator) -> list[Feature]:
    numeric_shapes = [
        stats.norm(0, 1),
        stats.lognorm(0.7),
        stats.expon(scale=2.0),
        stats.uniform(0, 10),
        stats.poisson(3.0),
    ]
    features = []
    for i in range(40):
        dist = numeric_shapes[i % len(numeric_shapes)]
        ref = NumericReference.capture(dist.rvs(BASELINE_ROWS, random_state=rng).astype(float))
        probs = discrete(dist, ref) if hasattr(dist.dist, "pmf") else continuous(dist, ref)
        features.append(Feature(f"num{i}", ref, probs))
    for i in range(10):
        k = 3 + i
        names = [f"c{j}" for j in range(k)]
        shares = rng.dirichlet(np.full(k, 5.0))
        ref = CategoricalReference.capture(
            rng.choice(names, BASELINE_ROWS, p=shares).astype(object)
        )
        features.append(Feature(f"cat{i}", ref, categorical(shares, ref, names)))
    return features


def verdict(feature: Feature, counts: np.ndarray, model: ModelConfig, alpha: float) -> bool:
    result = compare(
        feature.ref,
        counts.astype(float),
        model.thresholds_for(feature.name),
        model.min_samples,
        alpha,
    )
    return bool(result.detected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    features = build_features(rng)
    model = parse_config(
        {
            "models": [
                {
                    "model_id": "bench",
                    "kind": "regression",
                    "source": {"table": "t"},
                    "features": {
                        f.name: ("numeric" if f.name.startswith("num") else "categorical")
                        for f in features
                    },
                }
            ]
        }
    ).models[0]
    alpha = per_test_alpha(model)
    print(
        f"defaults: {model.thresholds.model_dump(exclude_none=True)}, "
        f"min_samples {model.min_samples}, "
        f"drift_alpha {model.drift_alpha} (alpha {alpha:.2e} per test); "
        f"baseline {BASELINE_ROWS:,} rows; {args.windows} windows per size"
    )

    # Power cases: N(0.25, 1) against the baseline of num0 (a standard normal feature), and a
    # 6-category feature whose first category's share moves from 10% to 20% (the others scaled).
    shifted_num = features[0]
    shift_probs = continuous(stats.norm(0.25, 1), shifted_num.ref)
    names = [f"k{j}" for j in range(6)]
    before = np.array([0.1, *np.full(5, 0.18)])
    after = np.array([0.2, *(before[1:] * 0.8 / 0.9)])
    cat_ref = CategoricalReference.capture(
        rng.choice(names, BASELINE_ROWS, p=before).astype(object)
    )
    moved = Feature("cat0", cat_ref, categorical(after, cat_ref, names))

    print(
        "\n| window rows | windows with any false verdict (50 features) "
        "| power: 0.25 sd mean shift | power: category 10% -> 20% |"
    )
    print("| --- | --- | --- | --- |")
    for n in SIZES:
        false_alarms = 0
        for _ in range(args.windows):
            if any(verdict(f, rng.multinomial(n, f.probabilities), model, alpha) for f in features):
                false_alarms += 1
        shift_hits = sum(
            verdict(shifted_num, rng.multinomial(n, shift_probs), model, alpha)
            for _ in range(args.windows)
        )
        cat_hits = sum(
            verdict(moved, rng.multinomial(n, moved.probabilities), model, alpha)
            for _ in range(args.windows)
        )
        w = args.windows
        print(
            f"| {n:,} | {false_alarms}/{w} = {false_alarms / w:.1%} "
            f"| {shift_hits}/{w} = {shift_hits / w:.1%} "
            f"| {cat_hits}/{w} = {cat_hits / w:.1%} |"
        )
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
