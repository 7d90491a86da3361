"""The loss memo against a plain dict, and a window whose labels take it against one whose
labels predict their losses again: the same sums, bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.baseline import loss_inputs
from exporter.performance.loss_memo import LossMemo
from exporter.simulator import AD_SCORE, ad_score_batch, reference_model
from exporter.window import ModelWindow, capture_baseline

_batches = st.lists(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 30), st.floats(0, 10)), max_size=25),
    min_size=1,
    max_size=6,
)


@given(_batches, st.lists(st.tuples(st.integers(0, 6), st.integers(0, 30)), max_size=40))
def test_take_gives_what_keep_was_given_and_nan_elsewhere(batches, asked) -> None:
    memo, reference = LossMemo(), {}
    for batch in batches:
        # The ledger lets each row through once: no key comes back in a later batch.
        unique = [
            (bk, v) for bk, v in {(b, k): v for b, k, v in batch}.items() if bk not in reference
        ]
        if not unique:
            continue
        buckets = np.array([b for (b, _), _ in unique], dtype=np.int64)
        keys = np.array([k for (_, k), _ in unique], dtype=np.uint64)
        values = np.array([v for _, v in unique])
        memo.keep(buckets, keys, values)
        reference.update(unique)
    for cutoff in (None, 3):
        if cutoff is not None:
            memo.forget_before(cutoff)
            reference = {bk: v for bk, v in reference.items() if bk[0] >= cutoff}
        buckets = np.array([b for b, _ in asked], dtype=np.int64)
        keys = np.array([k for _, k in asked], dtype=np.uint64)
        got = memo.take(buckets, keys)
        expected = [reference.get((b, k), np.nan) for b, k in asked]
        np.testing.assert_array_equal(got, np.array(expected, dtype=float))
        assert len(memo) == len(reference)


MODEL = reference_model(AD_SCORE, min_samples=200, min_labeled=30)


def test_labels_taking_the_memo_fold_what_labels_predicting_again_fold() -> None:
    rng = np.random.default_rng(3)
    baseline = capture_baseline(MODEL, ad_score_batch(rng, 20_000, "stable").rows(MODEL, True))
    batch = ad_score_batch(rng, 3_000, "covariate_shift")
    now = 1_800_000_000.0
    keyed = dataclasses.replace(
        batch.rows(MODEL, True), ts=now - rng.uniform(0, 3000, 3000), label=None
    )
    keyed = dataclasses.replace(keyed, key=rng.permutation(3000).astype(np.uint64))
    labels = dataclasses.replace(keyed, label=batch.actual.astype(float))
    half = np.arange(3000) < 1500  # the rest's predictions were never folded: not in the memo
    windows = []
    for memo in (True, False):
        window = ModelWindow(MODEL, baseline, [0.1])
        assert window.memo is not None
        window.add_predictions(
            keyed.take(half) if memo else dataclasses.replace(keyed.take(half), key=None), now
        )
        window.add_labels(labels if memo else dataclasses.replace(labels, key=None), now)
        windows.append(window)
    with_memo, without = windows
    assert len(with_memo.memo) == 1500 and len(without.memo) == 0
    np.testing.assert_array_equal(with_memo.performance.values, without.performance.values)
    layout = with_memo.performance_layout
    expected = baseline.loss_model.predict_absolute(loss_inputs(MODEL, baseline.features, labels))
    assert with_memo.performance.values[:, layout["dle_abs",]].sum() == pytest.approx(
        expected.sum(), rel=1e-12
    )
