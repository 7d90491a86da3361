"""Accuracy of performance estimated before labels, and the multivariate verdict's power.

The simulator's reference models, a labelled reference of 30,000 rows (`--reference`), and
windows whose labels the exporter never sees; the realised values come from scikit-learn on the
held-back labels. Issue 12's targets:

- classifier (CBPE), n = 5,000 per window, covariate shift with the calibration intact
  (`covariate_shift`, and `drift`): estimated ROC AUC and accuracy within 0.02 of the realised
  values in at least 95% of windows;
- regression (DLE), n = 5,000, covariate shift: estimated RMSE within 10% of the realised RMSE
  in at least 90% of windows;
- multivariate drift, n = 2,000: a flipped correlation (`correlation_change`, marginals
  unchanged) gives the verdict in at least 95% of windows while no univariate verdict fires;
  stationary windows give it in at most 1%.

It also prints what estimation costs the fold (rows/s with and without it).

    python benchmarks/estimation.py [--windows 200] [--reference 30000] [--seed 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from harness import machine
from sklearn.metrics import accuracy_score, roc_auc_score, root_mean_squared_error

from exporter.report import report_of
from exporter.simulator import (
    ACCOUNT_HEALTH,
    AD_SCORE,
    account_health_batch,
    ad_score_batch,
    reference_model,
)
from exporter.sufficient_stats import totals_of
from exporter.window import capture_baseline


def share(flags: list[bool]) -> str:
    return f"{np.mean(flags):6.1%}"


def classifier(windows: int, reference: int, rng: np.random.Generator) -> None:
    config = reference_model(ACCOUNT_HEALTH)
    baseline = capture_baseline(config, account_health_batch(rng, reference, "stable").rows(config))
    cal = baseline.calibration
    print(
        f"\nCBPE, classifier: calibration of {cal.rows:,} reference rows, ECE "
        f"{cal.error_before:.3f} raw -> {cal.error_after:.3f} mapped; {windows} windows of 5,000"
    )
    print("scenario         AUC within 0.02  acc. within 0.02  both  |AUC err| p95  bias")
    for scenario in ("stable", "covariate_shift", "drift", "performance_drop"):
        auc_ok, acc_ok, errors = [], [], []
        for _ in range(windows):
            batch = account_health_batch(rng, 5000, scenario)
            report = report_of(config, baseline, batch.rows(config, False))
            estimated = report.estimated.values
            auc_err = estimated["roc_auc"] - roc_auc_score(batch.actual, batch.score)
            acc_err = estimated["accuracy"] - accuracy_score(batch.actual, batch.score >= 0.5)
            auc_ok.append(abs(auc_err) <= 0.02)
            acc_ok.append(abs(acc_err) <= 0.02)
            errors.append(auc_err)
        both = [a and b for a, b in zip(auc_ok, acc_ok, strict=True)]
        note = "  (concept drift: not estimable)" if scenario == "performance_drop" else ""
        print(
            f"{scenario:16s} {share(auc_ok)}           {share(acc_ok)}            "
            f"{share(both)}  {np.quantile(np.abs(errors), 0.95):.4f}       "
            f"{np.mean(errors):+.4f}{note}"
        )


def regression(windows: int, reference: int, rng: np.random.Generator) -> None:
    config = reference_model(AD_SCORE)
    baseline = capture_baseline(config, ad_score_batch(rng, reference, "stable").rows(config))
    print(
        f"\nDLE, regression: loss models from {baseline.loss_model.rows:,} reference rows; "
        f"{windows} windows of 5,000"
    )
    print("scenario         RMSE within 10%  |rel. err| p90  bias")
    for scenario in ("stable", "covariate_shift", "drift", "performance_drop"):
        ok, errors = [], []
        for _ in range(windows):
            batch = ad_score_batch(rng, 5000, scenario)
            report = report_of(config, baseline, batch.rows(config, False))
            err = (
                report.estimated.values["rmse"]
                / root_mean_squared_error(batch.actual, batch.prediction)
                - 1
            )
            ok.append(abs(err) <= 0.1)
            errors.append(err)
        note = {
            "drift": "  (outside the reference's range: extrapolation)",
            "performance_drop": "  (concept drift: not estimable)",
        }.get(scenario, "")
        print(
            f"{scenario:16s} {share(ok)}           {np.quantile(np.abs(errors), 0.9):.4f}       "
            f"{np.mean(errors):+.4f}{note}"
        )


def multivariate(windows: int, reference: int, rng: np.random.Generator) -> None:
    config = reference_model(AD_SCORE, min_samples=200)
    baseline = capture_baseline(config, ad_score_batch(rng, reference, "stable").rows(config))
    pca = baseline.multivariate
    print(
        f"\nMultivariate drift: {len(pca.components)} of {len(pca.features)} components "
        f"({pca.explained:.0%} of the variance); windows of 2,000"
    )
    print("scenario            windows  multivariate verdict  any univariate verdict")
    for scenario, count in (("stable", windows * 5), ("correlation_change", windows)):
        fired, univariate = [], []
        for _ in range(count):
            batch = ad_score_batch(rng, 2000, scenario)
            report = report_of(config, baseline, batch.rows(config, False))
            fired.append(report.multivariate.detected)
            univariate.append(bool(report.drifted_features))
        print(f"{scenario:18s}  {count:7d}  {share(fired)}                {share(univariate)}")


def fold_cost(rng: np.random.Generator) -> None:
    print("\nFold cost: rows/s of totals_of over 200,000 rows (best of 3)")
    for name, generate in ((ACCOUNT_HEALTH, account_health_batch), (AD_SCORE, ad_score_batch)):
        for label, settings in (
            (
                "without estimation",
                {"estimation": {"enabled": False}, "multivariate": {"enabled": False}},
            ),
            ("with estimation", {}),
        ):
            config = reference_model(name, **settings)
            baseline = capture_baseline(config, generate(rng, 30_000, "stable").rows(config))
            rows = generate(rng, 200_000, "drift").rows(config, labels=False)
            best = min(
                _timed(lambda c=config, b=baseline, r=rows: totals_of(c, b, r)) for _ in range(3)
            )
            print(f"  {name:15s} {label:20s} {200_000 / best:10,.0f} rows/s")


def _timed(work: object) -> float:
    start = time.perf_counter()
    work()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--reference", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(machine())
    classifier(args.windows, args.reference, rng)
    regression(args.windows, args.reference, rng)
    multivariate(args.windows, args.reference, rng)
    fold_cost(rng)


if __name__ == "__main__":
    main()
