"""The `model-monitor` command: serve, healthcheck, check-config, init-store, baseline, simulate,
demo, mixin, dashboards, docs."""

from __future__ import annotations

import argparse
import logging
import logging.config
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from exporter.config import Config, ConfigError, default_config_path, load_config
from exporter.log_format import LEVELS, logging_config
from exporter.logging.prediction_logger import PredictionLogger
from exporter.simulator import GENERATORS, LabelDelay, Simulator

DEFAULT_LISTEN = "0.0.0.0:9747"
DEMO_CONFIG = Path("examples/demo.yml")
DEMO_SCHEDULE = (
    "stable=120,drift=120,stable=60,performance_drop=120,fairness_gap=120,latency_regression=120,"
    "stable=60,covariate_shift=120,correlation_change=120"
)

log = logging.getLogger("model-monitor")


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _parse_time(text: str) -> float:
    import pandas as pd

    stamp = pd.Timestamp(text)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return stamp.timestamp()


def cmd_check_config(args: argparse.Namespace) -> int:
    from exporter.storage.engine import create_engine
    from exporter.storage.prediction_store import check_mapping, describe_times

    config = _config(args)
    path = args.config or default_config_path()
    if args.no_store:
        print(f"{path}: valid, {len(config.models)} models (store not checked)")
        return 0
    engine = create_engine(config.store.url, config.store.timeouts)
    store = engine.url.render_as_string(hide_password=True)
    problems = {m.model_id: check_mapping(engine, m) for m in config.models}
    found = [f"models[{m}].{p}" for m, ps in problems.items() for p in ps]
    if found:
        for problem in found:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{path}: {len(found)} problems with the store {store}", file=sys.stderr)
        return 1
    print(
        f"{path}: valid, {len(config.models)} models; store {store}: every mapped table and "
        "column exists with a usable type"
    )
    for model in config.models:
        for note in describe_times(engine, model):
            print(f"  models[{model.model_id}].{note}")
    return 0


def cmd_init_store(args: argparse.Namespace) -> int:
    from exporter.storage.engine import create_engine
    from exporter.storage.prediction_store import create_schema

    config = _config(args)
    create_schema(create_engine(config.store.url, config.store.timeouts), config)
    print("store schema ready")
    return 0


def capture(
    config: Config,
    model_id: str,
    start: float | None = None,
    end: float | None = None,
    file: Path | None = None,
    command: str = "",
    progress: bool = False,
) -> int:
    """Capture and store a baseline; returns its version."""
    from exporter.rows import parse_rows
    from exporter.storage.baseline_store import BaselineStore, read_file, read_range
    from exporter.storage.engine import create_engine
    from exporter.window import capture_baseline

    model = config.model(model_id)
    engine = create_engine(config.store.url, config.store.timeouts)
    if file is not None:
        frame, ts = read_file(file, model)
        source = f"file {file}"
    else:
        assert start is not None and end is not None
        frame, ts = read_range(engine, model, start, end, progress=progress)
        source = f"store {model.source.table} from {start:.0f} to {end:.0f} (epoch s)"
    rows, rejected = parse_rows(
        frame, model, ts, label="optional" if model.source.labels else "none"
    )
    if rejected.counts:
        log.warning("baseline of %s: rows left out: %s", model_id, dict(rejected.counts))
    baseline = capture_baseline(model, rows)
    return BaselineStore(engine).save(baseline, source=source, command=command)


def cmd_baseline(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.file is None and args.start is None:
        raise ConfigError("give --file (training data) or --from/--to (a time range of the store)")
    end = _parse_time(args.end) if args.end else time.time()
    start = _parse_time(args.start) if args.start else None
    command = "model-monitor " + shlex.join(sys.argv[1:])
    version = capture(
        config,
        args.model,
        start,
        end,
        Path(args.file) if args.file else None,
        command,
        progress=True,
    )
    print(f"baseline version {version} stored for model {args.model}")
    return 0


def _simulator(
    config: Config, rate: float, label_delay: tuple[float, float]
) -> tuple[PredictionLogger, Simulator]:
    logger = PredictionLogger(config)
    models = {
        name: m.model_id
        for m in config.models
        for name in GENERATORS
        if m.model_id.startswith(name)
    }
    if not models:
        raise ConfigError(
            f"the simulator knows the models {sorted(GENERATORS)}; none is in the config"
        )
    return logger, Simulator(logger, models, rate=rate, delay=LabelDelay(*label_delay))


def seed_and_capture(config: Config, sim: Simulator, rows: int) -> None:
    """An hour of stable reference traffic that ends before every window, and baselines from it,
    for each model that has no baseline yet."""
    from exporter.storage.baseline_store import BaselineStore
    from exporter.storage.engine import create_engine

    store = BaselineStore(create_engine(config.store.url, config.store.timeouts))
    missing = [m.model_id for m in config.models if store.latest_version(m.model_id) is None]
    if not missing:
        return
    end = time.time() - max(m.performance_window.length for m in config.models) - 60
    log.info("seeding %d reference predictions per model", rows)
    sim.seed_reference(end - 3600, end, rows)
    for model_id in missing:
        version = capture(config, model_id, end - 3600, end, command="model-monitor seed")
        log.info("baseline version %d captured for %s", version, model_id)


def cmd_simulate(args: argparse.Namespace) -> int:
    from exporter.simulator import parse_schedule
    from exporter.storage.engine import create_engine
    from exporter.storage.prediction_store import create_schema

    config = _config(args)
    create_schema(create_engine(config.store.url, config.store.timeouts), config)
    logger, sim = _simulator(config, args.rate, (args.label_delay_min, args.label_delay_max))
    if args.seed_reference:
        seed_and_capture(config, sim, args.seed_reference)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.duration:
        threading.Timer(args.duration, stop.set).start()
    try:
        sim.run(parse_schedule(args.schedule), stop, loop=not args.once)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        logger.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Fresh SQLite store, an hour of stable reference traffic, baselines, simulator, exporter."""
    from exporter.server import serve
    from exporter.storage.engine import create_engine
    from exporter.storage.prediction_store import create_schema

    config = _config(args)
    url = config.store.url
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    create_schema(create_engine(url), config)
    logger, sim = _simulator(config, args.rate, (5.0, 30.0))
    now = time.time()
    reference_end = now - max(m.performance_window.length for m in config.models) - 60
    log.info("seeding %d reference predictions per model", args.reference_rows)
    sim.seed_reference(reference_end - 3600, reference_end, args.reference_rows)
    logger.close()
    for model in config.models:
        version = capture(
            config,
            model.model_id,
            reference_end - 3600,
            reference_end,
            command="model-monitor demo",
        )
        log.info("baseline version %d captured for %s", version, model.model_id)
    simulate = [
        sys.executable,
        "-m",
        "exporter.cli",
        "simulate",
        "--config",
        str(args.config),
        "--schedule",
        args.schedule,
        "--rate",
        str(args.rate),
        "--label-delay-min",
        "5",
        "--label-delay-max",
        "30",
    ]
    simulator = subprocess.Popen(simulate)
    host = "127.0.0.1" if args.listen.startswith("0.0.0.0") else args.listen.rsplit(":", 1)[0]
    print(
        f"\nmodel-monitor demo: metrics at http://{host}:{args.listen.rsplit(':', 1)[1]}/metrics "
        f"(scenarios: {args.schedule})\n",
        flush=True,
    )
    try:
        serve(config, args.listen, log_level=args.log_level, log_format=args.log_format)
    finally:
        simulator.terminate()
        simulator.wait(timeout=20)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from exporter.server import serve
    from exporter.sharding import parse_shard
    from exporter.web.config import load_web_config

    config = _config(args)
    shard = parse_shard(args.shard) if args.shard else None
    if not args.telemetry_path.startswith("/"):
        raise ConfigError(f"--web.telemetry-path {args.telemetry_path!r}: start it with /")
    web = load_web_config(args.web_config) if args.web_config else None
    serve(
        config,
        args.listen,
        threads=args.threads,
        web=web,
        telemetry_path=args.telemetry_path,
        log_level=args.log_level,
        log_format=args.log_format,
        shard=shard,
    )
    return 0


def cmd_healthcheck(args: argparse.Namespace) -> int:
    from exporter.probe import probe

    ok, message = probe(args.listen, "/-/ready" if args.ready else "/-/healthy", args.timeout)
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def version_text() -> str:
    from importlib.metadata import version

    return f"model-monitor, version {version('model-monitor')} (python {platform.python_version()})"


def cmd_docs(args: argparse.Namespace) -> int:
    from exporter.reference_docs import write_references

    stale = write_references(Path(args.root), check=args.check)
    for path in stale:
        print(f"{path} is out of date; run `model-monitor docs`" if args.check else f"wrote {path}")
    return 1 if args.check and stale else 0


def cmd_mixin(args: argparse.Namespace) -> int:
    from exporter import mixin

    changed = mixin.generate(Path(args.root), Path(args.mixin_config), check=args.check)
    for path in changed:
        print(f"{path} is out of date; run `make mixin`" if args.check else f"wrote {path}")
    return 1 if args.check and changed else 0


def cmd_dashboards(args: argparse.Namespace) -> int:
    from exporter.visualization import dashboard_files as files

    if not args.grafana_url or not args.token_file:
        raise ConfigError("push needs --grafana-url and --token-file")
    try:
        token = Path(args.token_file).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read --token-file {args.token_file}: {exc.strerror}") from None
    try:
        results = files.push(
            sorted(Path(args.dashboards).glob("*.json")), args.grafana_url, token, args.folder
        )
    except files.GrafanaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for result in results:
        print(f"pushed {result.get('uid')} (version {result.get('version')}): {result.get('url')}")
    return 0


def _log_flags(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The flags every command takes, before or after its name (`defaults` only on the main
    parser, so that a subcommand's parser does not reset what was given before it)."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--log.level",
        dest="log_level",
        default=default("info"),
        choices=list(LEVELS),
        help="only log messages at or above this level (default info)",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        default=default("logfmt"),
        choices=["logfmt", "json"],
        help="output format of log messages (default logfmt)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="log at debug and show a failure's traceback",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model-monitor", description=__doc__)
    parser.add_argument("--version", action="version", version=version_text())
    _log_flags(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _log_flags(common, defaults=False)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func, help_: str, config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, parents=[common])
        if config:
            p.add_argument(
                "--config",
                default=None,
                help="config file (default: $MODEL_MONITOR_CONFIG or ./model-monitor.yml)",
            )
        p.set_defaults(func=func)
        return p

    p = command("serve", cmd_serve, "Serve /metrics under gunicorn.")
    p.add_argument(
        "--web.listen-address",
        dest="listen",
        default=DEFAULT_LISTEN,
        help=f"address on which to expose metrics and the web interface (default {DEFAULT_LISTEN})",
    )
    p.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        default="/metrics",
        help="path under which to expose metrics (default /metrics)",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config",
        default=None,
        help="exporter-toolkit web config: TLS, basic auth, headers, rate limit (docs/deploy.md)",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="monitor only this replica's share of the models: I of N (2/4), or auto/N to take "
        "I from a StatefulSet pod's ordinal (docs/deploy.md)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=64,
        help="threads of the single worker (they mostly wait: on the store, or holding a "
        "refused login back; see docs/architecture.md)",
    )
    p = command(
        "healthcheck",
        cmd_healthcheck,
        "Exit 0 if the exporter at --web.listen-address answers its probe (TLS or not).",
        config=False,
    )
    p.add_argument("--web.listen-address", dest="listen", default="127.0.0.1:9747")
    p.add_argument("--ready", action="store_true", help="probe /-/ready instead of /-/healthy")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    p = command(
        "check-config", cmd_check_config, "Validate the config and check the mapped tables."
    )
    p.add_argument("--no-store", action="store_true", help="validate the file only")
    command(
        "init-store", cmd_init_store, "Create the project's tables and any missing mapped table."
    )
    p = command(
        "baseline", cmd_baseline, "Capture a baseline from the store or a CSV/Parquet file."
    )
    p.add_argument("--model", required=True)
    p.add_argument("--from", dest="start", help="start of the store range (ISO time, UTC)")
    p.add_argument("--to", dest="end", help="end of the store range (default: now)")
    p.add_argument("--file", help="CSV or Parquet training data with the mapped column names")
    p = command("simulate", cmd_simulate, "Write simulated live traffic for the reference models.")
    p.add_argument("--schedule", default=DEMO_SCHEDULE, help="scenario=seconds,... (looped)")
    p.add_argument("--rate", type=float, default=20.0, help="predictions per second per model")
    p.add_argument("--label-delay-min", type=float, default=30.0)
    p.add_argument("--label-delay-max", type=float, default=120.0)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--once", action="store_true", help="run the schedule once instead of looping")
    p.add_argument(
        "--seed-reference",
        type=int,
        default=0,
        metavar="ROWS",
        help="first seed this many reference rows and capture baselines (models without one)",
    )
    p = command(
        "demo", cmd_demo, "Fresh SQLite store, reference data, baselines, simulator and exporter."
    )
    p.set_defaults(config=str(DEMO_CONFIG))
    p.add_argument("--web.listen-address", dest="listen", default="127.0.0.1:9747")
    p.add_argument("--schedule", default=DEMO_SCHEDULE)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--reference-rows", type=int, default=20_000)
    p = sub.add_parser(
        "dashboards", help="Push the generated dashboards to Grafana.", parents=[common]
    )
    p.add_argument("action", choices=["push"])
    p.add_argument(
        "--dashboards", default="dashboards/generated", help="folder of generated *.json"
    )
    p.add_argument("--grafana-url", help="Grafana base URL")
    p.add_argument("--token-file", help="file holding a service account token")
    p.add_argument("--folder", help="Grafana folder (created if missing)")
    p.set_defaults(func=cmd_dashboards)
    p = sub.add_parser(
        "mixin",
        help="Regenerate the alert rules, dashboards and Kubernetes objects from mixin/.",
        parents=[common],
    )
    p.add_argument("--root", default=".", help="repository root")
    p.add_argument(
        "--mixin-config", default="mixin/config.yml", help="the mixin config (from --root)"
    )
    p.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    p.set_defaults(func=cmd_mixin)
    p = sub.add_parser(
        "docs", help="Regenerate the metric and config references.", parents=[common]
    )
    p.add_argument("--root", default=".", help="repository root")
    p.add_argument("--check", action="store_true", help="fail if a reference is out of date")
    p.set_defaults(func=cmd_docs)
    return parser


def describe_error(exc: BaseException) -> list[str]:
    """One line per problem of a failed command (one, unless a config has several): what
    failed, where, and what to do about it."""
    if isinstance(exc, ValueError):  # ConfigError included: already phrased for the user
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        if len(lines) > 1 and lines[0].endswith(":"):  # a header, then one problem per line
            return [f"{lines[0]} {line}" for line in lines[1:]]
        return [" ".join(lines)]
    return [_describe_failure(exc)]


def _describe_failure(exc: BaseException) -> str:
    from sqlalchemy.exc import DBAPIError, NoSuchTableError, SQLAlchemyError

    from exporter.storage.engine import DeadlineExceededError

    first = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, DeadlineExceededError):
        return (
            f"the store did not answer in time (store.timeouts): {first}; check that the "
            "database is up and not locked, or raise store.timeouts.statement"
        )
    if isinstance(exc, NoSuchTableError):
        return (
            f"table {first} does not exist in the store; run `model-monitor init-store` or "
            "fix source.table in the config"
        )
    if isinstance(exc, DBAPIError):
        origin = (str(exc.orig).strip().splitlines() or [first])[0]
        return (
            f"the store (store.url) failed: {origin}; check that the database is running and "
            "reachable, and the user, password and database name in store.url"
        )
    if isinstance(exc, SQLAlchemyError):
        return f"the store (store.url) failed: {first}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or first}"
    return f"{type(exc).__name__}: {first} (run with --debug for the traceback)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        args.log_level = "debug"
    logging.config.dictConfig(logging_config(args.log_level, args.log_format))
    np.seterr(all="ignore")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        for line in describe_error(exc):
            print(f"error: {line}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1


if __name__ == "__main__":
    sys.exit(main())
