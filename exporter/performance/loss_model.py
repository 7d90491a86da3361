"""Regression performance before the labels arrive: direct loss estimation (DLE).

NannyML's method, made streaming. At baseline capture two small gradient-boosted models
(scikit-learn's `HistGradientBoostingRegressor`) learn, on the labelled reference, the expected
absolute and squared error of a prediction from the features and the prediction itself. At fold
time each new row gets its two expected losses and the window keeps their sums per bucket:
estimated MAE is the mean expected absolute error, estimated RMSE the root of the mean expected
squared error. It holds while the error given the inputs stays as in the reference (covariate
shift), not under concept drift, which the realised-vs-estimated gap shows once labels arrive.

The models are stored with the baseline through skops, which rebuilds only the types listed in
TRUSTED: a baseline row from an untrusted store cannot run code, unlike a pickle.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.preprocessing import OrdinalEncoder
from threadpoolctl import ThreadpoolController

MAX_TRAINING_ROWS = 100_000  # labelled reference rows the loss models learn from (a sample)
# Batches below this many rows are predicted on the calling thread alone (see `_threads`).
SMALL_BATCH = 10_000
# What a stored HistGradientBoostingRegressor is rebuilt from beyond skops' own trusted types
# (numpy, builtins, scikit-learn's estimators): its trees and its categorical encoder's check.
TRUSTED = (
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
)


def _regressor(categorical: list[int]) -> HistGradientBoostingRegressor:
    """Small and regularised: the reference is its only data, and it must not learn noise. Every
    new row goes through both models, so their size is the fold's cost: 50 trees (half of
    scikit-learn's default, at twice its learning rate) predict 200,000 rows of 56 inputs in
    0.4 s, 100 trees in 0.7 s, with the same accuracy (docs/performance.md)."""
    return HistGradientBoostingRegressor(
        max_iter=50,
        learning_rate=0.2,
        max_leaf_nodes=15,
        min_samples_leaf=50,
        l2_regularization=1.0,
        categorical_features=categorical or None,
        early_stopping=False,
        random_state=0,
    )


def _encode(model: HistGradientBoostingRegressor) -> str:
    return base64.b64encode(sio.dumps(model, compression=8)).decode("ascii")


def _decode(text: str) -> HistGradientBoostingRegressor:
    data = base64.b64decode(text)
    untrusted = set(sio.get_untrusted_types(data=data)) - set(TRUSTED)
    if untrusted:
        raise ValueError(
            f"the baseline's loss model holds types that are not trusted: {sorted(untrusted)}; "
            "capture the baseline again with this version"
        )
    model = sio.loads(data, trusted=list(TRUSTED))
    if not isinstance(model, HistGradientBoostingRegressor):
        raise ValueError("the baseline's loss model is not a HistGradientBoostingRegressor")
    return model


@functools.cache
def _openmp() -> ThreadpoolController:
    """The OpenMP runtime scikit-learn's trees run on, found once (threadpoolctl inspects the
    loaded libraries, which takes milliseconds)."""
    return ThreadpoolController()


def _threads(rows: int) -> contextlib.AbstractContextManager[Any]:
    """One OpenMP thread for a small batch, the runtime's default for a large one.

    Each tree's predict is an OpenMP parallel region that ends at a barrier. A scrape's few
    hundred rows per model are microseconds of work per tree, and on a busy host (other
    processes, gunicorn's other workers) a team thread that is not scheduled holds the barrier
    for a time slice: 200 rows through 50 trees took a mean of 2.3-34.6 ms with two threads
    against 0.7-2.1 ms with one while other processes kept the cores busy, and a scrape of 20
    models 13-16% less with the limit on a quiet machine (docs/performance.md). A cold start's
    large batches still use every core. The limit is the calling thread's own (OpenMP's
    thread-count setting is per thread): other threads do not see it."""
    if rows >= SMALL_BATCH:
        return contextlib.nullcontext()
    return one_thread()


def one_thread() -> contextlib.AbstractContextManager[Any]:
    """The trees predicted on the calling thread alone, whatever the batch (within it,
    `_threads` changes nothing: a large batch keeps the limit it finds)."""
    return _openmp().limit(limits=1, user_api="openmp")


class _Ranks:
    """What a fitted model's preprocessor does to our inputs at predict time, in numpy.

    A HistGradientBoostingRegressor with categorical inputs sends every predict through a
    ColumnTransformer: an OrdinalEncoder turns each categorical input into its rank among the
    values seen in training (unseen or missing: NaN) and puts those columns first; the numeric
    inputs follow as they are. For our inputs (float codes) that is a `searchsorted` per
    categorical column, where scikit-learn's generic path took about 2.8 ms of a 200-row
    predict's 4.0 ms (docs/performance.md). `of` builds it only from a preprocessor of
    exactly that shape; tests/test_dle.py checks that predictions equal scikit-learn's, unseen
    and missing codes included."""

    def __init__(
        self, categorical: np.ndarray, numeric: np.ndarray, categories: list[np.ndarray]
    ) -> None:
        self.categorical = categorical  # input positions of the encoder's columns, in order
        self.numeric = numeric  # input positions of the numeric columns, in order
        self.categories = [c[~np.isnan(c)] for c in categories]  # sorted; NaN is missing

    @classmethod
    def of(cls, model: HistGradientBoostingRegressor) -> _Ranks | None:
        """The preprocessor of `model` in numpy, or None when it is not the one described."""
        pre = getattr(model, "_preprocessor", None)
        if not isinstance(pre, ColumnTransformer):
            return None
        steps = {name: (step, columns) for name, step, columns in pre.transformers_}
        encoder, categorical = steps.get("encoder", (None, None))
        _, numeric = steps.get("numerical", (None, None))
        plain = (
            isinstance(encoder, OrdinalEncoder)
            and encoder.handle_unknown == "use_encoded_value"
            and np.isnan(encoder.unknown_value)
            and np.isnan(encoder.encoded_missing_value)
            and set(steps) <= {"encoder", "numerical", "remainder"}
            and steps.get("remainder", ("drop",))[0] == "drop"
        )
        if not plain:
            return None
        categorical, numeric = np.flatnonzero(categorical), np.flatnonzero(numeric)
        if pre.output_indices_["encoder"] != slice(0, len(categorical)):
            return None
        return cls(categorical, numeric, [np.asarray(c, dtype=float) for c in encoder.categories_])

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape)
        for k, (column, categories) in enumerate(
            zip(self.categorical, self.categories, strict=True)
        ):
            values = x[:, column]
            if len(categories) == 0:
                out[:, k] = np.nan
                continue
            rank = np.minimum(np.searchsorted(categories, values), len(categories) - 1)
            out[:, k] = np.where(categories[rank] == values, rank, np.nan)
        out[:, len(self.categorical) :] = x[:, self.numeric]
        return out


def _fast(model: HistGradientBoostingRegressor) -> HistGradientBoostingRegressor:
    """A shallow copy of `model` (the same trees) that preprocesses through `_Ranks`: the
    model itself stays scikit-learn's, as stored."""
    ranks = _Ranks.of(model)
    if ranks is None:
        return model
    fast = copy.copy(model)
    fast._preprocessor = ranks
    return fast


@dataclass(frozen=True)
class LossModel:
    """Expected |error| and error² of a regression's prediction, from its inputs.

    Inputs, in order: the numeric features, the categorical features as baseline category
    codes (NaN when missing), then the prediction (`inputs` names them). The codes are
    categories to the trees (scikit-learn's native support), not numbers: taken as numbers they
    folded 40% faster but estimated the simulated ad drift's RMSE 10% high where categories
    kept it within 1% (docs/performance.md)."""

    inputs: tuple[str, ...]
    categorical: tuple[int, ...]  # positions of the categorical inputs
    absolute: HistGradientBoostingRegressor
    squared: HistGradientBoostingRegressor
    rows: int  # labelled reference rows it learned from

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected absolute and squared error of each row (never negative)."""
        return self._predict(0, x), self._predict(1, x)

    def predict_absolute(self, x: np.ndarray) -> np.ndarray:
        """Expected absolute error alone: all that the check against labels needs, at half
        the trees."""
        return self._predict(0, x)

    def _predict(self, which: int, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0)
        # A scrape folds a few hundred new rows per model; there scikit-learn's per-call checks
        # of its inputs cost more than the trees (4.4 ms against 2.6 ms a call, 200 rows of 56
        # inputs), and so did its preprocessing (`_Ranks`). The inputs are ours: finite or NaN
        # (missing) by construction.
        with (
            sklearn.config_context(assume_finite=True, skip_parameter_validation=True),
            _threads(len(x)),
        ):
            return np.clip(self._predictors[which].predict(x), 0.0, None)

    @functools.cached_property
    def _predictors(self) -> tuple[HistGradientBoostingRegressor, HistGradientBoostingRegressor]:
        """The two models as they predict: with `_Ranks` for a preprocessor, made once."""
        return _fast(self.absolute), _fast(self.squared)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "hist_gradient_boosting",
            "inputs": list(self.inputs),
            "categorical": list(self.categorical),
            "absolute_error": _encode(self.absolute),
            "squared_error": _encode(self.squared),
            "rows": self.rows,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LossModel:
        return cls(
            tuple(data["inputs"]),
            tuple(data["categorical"]),
            _decode(data["absolute_error"]),
            _decode(data["squared_error"]),
            int(data["rows"]),
        )

    @classmethod
    def fit(
        cls,
        inputs: tuple[str, ...],
        categorical: tuple[int, ...],
        x: np.ndarray,
        error: np.ndarray,
    ) -> LossModel:
        """Learn from the labelled reference rows `x` and their errors (prediction - actual);
        at most MAX_TRAINING_ROWS of them, a seeded sample."""
        if len(x) > MAX_TRAINING_ROWS:
            keep = np.random.default_rng(0).choice(len(x), MAX_TRAINING_ROWS, replace=False)
            x, error = x[np.sort(keep)], error[np.sort(keep)]
        return cls(
            inputs,
            categorical,
            _regressor(list(categorical)).fit(x, np.abs(error)),
            _regressor(list(categorical)).fit(x, error * error),
            len(x),
        )


def estimate(n: float, absolute: float, squared: float) -> dict[str, float]:
    """Estimated MAE and RMSE of `n` rows from the sums of their expected losses."""
    if n <= 0:
        return {}
    return {"mae": absolute / n, "rmse": math.sqrt(squared / n)}


def standard_errors(values: dict[str, float], n: float) -> dict[str, float]:
    """The sampling band of each estimate: the standard error the realised metric would have on
    n rows with these expected losses. MAE: sd of |error| from E[e²] - E[|e|]²; RMSE: RMSE /
    sqrt(2n), exact for normal errors (heavier tails make the band too narrow)."""
    if n < 2 or not values:
        return {}
    mae, rmse = values["mae"], values["rmse"]
    return {
        "mae": math.sqrt(max(rmse * rmse - mae * mae, 0.0) / n),
        "rmse": rmse / math.sqrt(2 * n),
    }
