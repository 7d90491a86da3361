"""`make bench`: every benchmark, one after the other, one table of the targets of issue 11
(speed at scale) and issue 12 (estimation accuracy), and the batch API's time beside Evidently's
and NannyML's (`competitors.py`, in a virtualenv of their own created on first use).

Each benchmark runs in its own process (SQLite, and PostgreSQL when it answers at
MODEL_MONITOR_BENCH_PG, default 127.0.0.1:5432/test, in a fresh schema `bench` per run); its
whole output goes to var/bench/<name>.log. The table gives, per target, the measured figure,
the target, their ratio (measured / target, so <= 1 meets a ceiling; >= 1 meets a floor) and
the verdict. `--quick` runs small sizes to check the wiring (its figures are not the targets').

    python benchmarks/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from harness import machine

HERE = Path(__file__).resolve().parent
LOGS = HERE.parent / "var" / "bench"
PG = os.environ.get("MODEL_MONITOR_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_BENCH = f"{PG}?options=-csearch_path%3Dbench"


@dataclass(frozen=True)
class Target:
    what: str
    value: float | None  # None: the benchmark printed no figure (see its log)
    bound: float
    ceiling: bool  # True: at most `bound`; False: at least


def figure(pattern: str, text: str) -> float | None:
    """The last match's first group, as a number."""
    found = re.findall(pattern, text)
    return float(found[-1].replace(",", "")) if found else None


def batch_figures(text: str) -> tuple[float | None, float | None]:
    """(detector / fastest recompute, the detector's larger memory peak in MB) of the largest
    size `batch_api.py` printed: rows, time, (capture + check), numpy, binned, ratio, MB + MB."""
    lines = [line.split() for line in text.splitlines() if re.match(r"\s*[\d,]+\s+[\d.]+s", line)]
    if not lines:
        return None, None
    last = lines[-1]
    return float(last[7]), max(float(last[8]), float(last[10]))


def competitors(text: str) -> str:
    """The line `competitors.py` printed for its largest size, said as the two ratios."""
    lines = [line.split() for line in text.splitlines() if re.match(r"\s*[\d,]+\s+[\d.]+s", line)]
    if not lines:
        return "Evidently and NannyML: no figure (see var/bench/competitors.log)"
    rows, evidently, nannyml = lines[-1][0], lines[-1][4], lines[-1][5]
    return (
        f"same data, {rows} rows per side: Evidently {evidently}, NannyML {nannyml} "
        "the detector's time"
    )


def estimation_targets(text: str) -> list[Target]:
    """Issue 12's accuracy targets from `estimation.py`'s three tables (shares in percent; for
    CBPE the third column, AUC and accuracy both within 0.02)."""
    cbpe, _, rest = text.partition("DLE,")
    dle, _, multivariate = rest.partition("Multivariate drift")
    both = re.search(r"covariate_shift\s+[\d.]+%\s+[\d.]+%\s+([\d.]+)%", cbpe)
    return [
        Target(
            "CBPE, covariate shift: AUC and accuracy within 0.02, % windows",
            float(both.group(1)) if both else None,
            95,
            False,
        ),
        Target(
            "DLE, covariate shift: RMSE within 10%, % windows",
            figure(r"covariate_shift\s+([\d.]+)%", dle),
            90,
            False,
        ),
        Target(
            "multivariate, flipped correlation: verdict, % windows",
            figure(r"correlation_change\s+\d+\s+([\d.]+)%", multivariate),
            95,
            False,
        ),
        Target(
            "multivariate, stationary: verdict, % windows",
            figure(r"stable\s+\d+\s+([\d.]+)%", multivariate),
            1,
            True,
        ),
    ]


def run(name: str, args: list[str], pg: bool = False) -> str:
    """One benchmark; its output, also written to var/bench/<name>.log."""
    if pg:
        with sa.create_engine(PG).begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS bench CASCADE; CREATE SCHEMA bench")
        args = [*args, "--store-url", PG_BENCH]
    script = name.split("@", maxsplit=1)[0]
    result = subprocess.run(
        [sys.executable, "-W", "ignore", str(HERE / f"{script}.py"), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / f"{name}.log").write_text(output)
    print(f"{name}: {'done' if result.returncode == 0 else f'FAILED ({result.returncode})'}")
    return output


def postgres_answers() -> bool:
    try:
        with sa.create_engine(PG, connect_args={"connect_timeout": 3}).connect():
            return True
    except sa.exc.OperationalError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check the wiring")
    quick = parser.parse_args().quick
    print(machine())
    windows = ["2000", "20000"] if quick else ["10000", "1000000"]  # scrape, reconcile
    many = ["--models", "5", "--features", "10", "--scrapes", "4"] if quick else []
    stores = ["sqlite", "postgresql"] if postgres_answers() else ["sqlite"]
    if stores == ["sqlite"]:
        print(f"PostgreSQL does not answer at {PG}: its rows are left out")
    outputs: dict[str, str] = {}
    for store in stores:
        pg = store == "postgresql"
        # One store per size: the benchmarks fill the store they are given.
        for name in ("scrape", "reconcile"):
            outputs[f"{name}@{store}"] = "".join(
                run(f"{name}@{store}-{size}", ["--sizes", size], pg) for size in windows
            )
        outputs[f"many_models@{store}"] = run(f"many_models@{store}", many, pg)
        backlog = ["--backlog", "20000", "--scrapes", "2"] if quick else []
        outputs[f"ingest@{store}"] = run(f"ingest@{store}", backlog, pg)
        cold = ["--rows", "20000", "--runs", "1"] if quick else []
        outputs[f"cold_start@{store}"] = run(f"cold_start@{store}", cold, pg)
        pushed = ["--rows", "2000"] if quick else []
        outputs[f"push_down@{store}"] = run(f"push_down@{store}", pushed, pg)
    outputs["batch_api"] = run("batch_api", ["--sizes", "20000"] if quick else [])
    for name, args in (
        ("exposition", ["--scrapes", "20"] if quick else []),
        ("auth_flood", ["--scrapes", "40"] if quick else []),
        ("drift_power", ["--windows", "20"] if quick else []),
        ("fairness_power", ["--windows", "20"] if quick else []),
        ("estimation", ["--windows", "10", "--reference", "10000"] if quick else []),
        ("deadlines", ["--statements", "500"] if quick else []),
        ("fold", ["--repeats", "1"] if quick else []),
        ("loss_models", ["--rows", "20000"] if quick else []),
        ("competitors", ["--sizes", "20000"] if quick else []),
    ):
        outputs[name] = run(name, args)

    targets = []
    for store in stores:
        medians = re.findall(r"scrape median\s+([\d.]+) ms", outputs[f"scrape@{store}"])
        many_models, ingest = outputs[f"many_models@{store}"], outputs[f"ingest@{store}"]
        targets += [
            Target(
                f"cold start, 1M x 25 features, rows/s ({store}, {state})",
                figure(rf"cold start \({state}\): ([\d,]+) rows/s", outputs[f"cold_start@{store}"]),
                200_000,
                False,
            )
            for state in ("fresh", "analyzed")
        ]
        targets += [
            Target(
                f"scrape, 1M / 10k window ({store})",
                float(medians[-1]) / float(medians[0]) if len(medians) >= 2 else None,
                1.2,
                True,
            ),
            Target(
                f"50 x 50 features, idle scrape p50 ms ({store})",
                figure(r"idle scrape:\s+p50\s+([\d.]+) ms", many_models),
                250,
                True,
            ),
            Target(
                f"50 x 50 features, active scrape p50 ms ({store})",
                figure(r"active scrape:\s+p50\s+([\d.]+) ms", many_models),
                600,
                True,
            ),
            Target(
                f"ingest kept up with, rows/s, 50 features ({store})",
                max(
                    (
                        float(rate.replace(",", ""))
                        for rate in re.findall(r"steady ([\d,]+) rows/s.*: keeps up", ingest)
                    ),
                    default=None,
                ),
                50_000,
                False,
            ),
        ]
    ratio, memory = batch_figures(outputs["batch_api"])
    targets += [
        Target("DataDriftDetector / fastest numpy recompute, time", ratio, 1.0, True),
        Target("DataDriftDetector extra memory, MB", memory, 300, True),
    ]
    targets += estimation_targets(outputs["estimation"])
    if quick:
        print("\nquick run: figures of small sizes, not comparable with the bounds")
    print(f"\n{'target':54} {'measured':>10} {'bound':>8} {'ratio':>6}  verdict")
    for t in targets:
        if t.value is None:
            print(f"{t.what:54} {'-':>10} {t.bound:>8,g} {'-':>6}  no figure: see its log")
            continue
        ratio = t.value / t.bound
        met = ratio <= 1 if t.ceiling else ratio >= 1
        verdict = "met" if met else "NOT met"
        print(f"{t.what:54} {t.value:>10,.2f} {t.bound:>8,g} {ratio:>6.2f}  {verdict}")
    print(f"\n{competitors(outputs['competitors'])}")
    print(f"\nlogs: {LOGS}")


if __name__ == "__main__":
    main()
