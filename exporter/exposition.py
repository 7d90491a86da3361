"""The /metrics endpoint: prometheus_client's formats, with each model's lines formatted once.

prometheus_client formats every sample of every scrape and, doing so, validates and escapes every
label name (0.26: about two thirds of a 50-model scrape's rendering). A model's report samples,
1,800 for 50 features, change only when its report does, so the collector keeps them formatted
(`RenderedFamily.text`) and this app joins the kept text. Everything else is prometheus_client's
own: content negotiation (`choose_encoder`), the `name[]` filter, gzip, and the formatting of any
family that carries no text, or of all of them when the negotiated escaping would rename ours.
"""

from __future__ import annotations

import functools
import gzip
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import ALLOWUTF8, UNDERSCORES
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

EOF = b"# EOF\n"

# A gauge's or a counter's sample as `LineFormat` met it: its name, labels, and its line up to
# the value (what a new report of the same model writes again with another value).
Series = tuple[str, dict[str, str], str]
# Samples kept as their series and values, built only when prometheus_client asks for them.
SeriesValues = tuple[list[Series], list[float]]
# Escapings that leave a legacy name (letters, digits, underscores) as it is: the only ones under
# which kept text is what prometheus_client would write.
NAME_PRESERVING = (UNDERSCORES, ALLOWUTF8)


def go_float(value: float) -> str:
    """`value` as prometheus_client writes it (`floatToGoString`), whose answer for a float
    below a million is its repr: only those above (Go's exponent form), infinities and NaN
    need its checks, which cost as much as the repr itself (90,000 values a 50-model scrape)."""
    return repr(value) if -math.inf < value < 1e6 else floatToGoString(value)


@functools.lru_cache(maxsize=1 << 16)
def _escaped(value: str) -> str:
    """A label value as the text formats quote it. Cached: the same model ids, feature names
    and bins recur in every report, and the three scans were a fifth of formatting one."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class LineFormat:
    """How both text formats write the samples of one name and label set, for legacy metric and
    label names and samples without timestamp or exemplar (the model families'): labels sorted
    by name, values escaped, the value as Go prints it. The label order and the text around the
    values are worked out once, so a family's samples share them (a 50-feature model writes
    1,800 samples with every new report)."""

    def __init__(self, sample_name: str, labelnames: Sequence[str]) -> None:
        self._order = sorted(range(len(labelnames)), key=labelnames.__getitem__)
        pairs = ",".join(f'{labelnames[i]}="%s"' for i in self._order)  # legacy names: no %
        self._template = f"{sample_name}{{{pairs}}} %s" if pairs else f"{sample_name} %s"

    @classmethod
    def of(cls, sample: Sample) -> LineFormat:
        """The format of samples named and labelled as `sample`."""
        return cls(sample.name, tuple(sample.labels))

    def __call__(self, labels: Sequence[str], value: float) -> str:
        return self.prefix(labels) + go_float(float(value)) + "\n"

    def prefix(self, labels: Sequence[str]) -> str:
        """The line up to its value."""
        return self._template % (*[_escaped(labels[i]) for i in self._order], "")


def sample_line(sample: Sample) -> str:
    """One sample's line (`LineFormat`), for families whose samples differ in name or labels
    (histogram, info, stateset)."""
    return LineFormat.of(sample)(tuple(sample.labels.values()), sample.value)


class RenderedFamily(Metric):
    """A family with its samples' text, formatted by `LineFormat`, and the samples themselves.

    The samples stay complete, for a `name[]` filter or a renaming escaping, which go through
    prometheus_client (it reads them, and drops the text, its copies being plain `Metric`s). A
    gauge's or a counter's are built from `series` only then: 90,000 `Sample`s a scrape of 50
    models, each holding a dict, were enough new objects to set off a full collection of the
    heap (about 350 ms) on nearly every scrape that brought new rows.
    """

    def __init__(self, family: Metric, text: str, series: Sequence[SeriesValues] = ()) -> None:
        super().__init__(family.name, family.documentation, family.type, family.unit)
        self._built = family.samples
        self._series = series
        self.text = text

    @property
    def samples(self) -> list[Sample]:  # type: ignore[override]
        if self._series:
            self._built = self._built + [
                Sample(name, labels, value)
                for names_labels, values in self._series
                for (name, labels, _), value in zip(names_labels, values, strict=True)
            ]
            self._series = ()
        return self._built

    @samples.setter
    def samples(self, samples: list[Sample]) -> None:  # `Metric.__init__` sets them
        self._built, self._series = samples, ()


class _One:
    """A registry of one family: what prometheus_client's encoders format."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return (self.family,)


def _encode(registry: CollectorRegistry, encoder: Callable[..., bytes], om: bool) -> bytes:
    """The registry's families as `encoder` writes them, with a kept family's header from
    `encoder` (the family without samples) and its samples from its text."""

    def written(family: Metric) -> bytes:
        own = encoder(_One(family))
        return own.removesuffix(EOF) if om else own

    parts = []
    for family in registry.collect():
        if isinstance(family, RenderedFamily):  # the header alone, then the kept text
            parts.append(
                written(Metric(family.name, family.documentation, family.type, family.unit))
            )
            parts.append(family.text.encode())
        else:
            parts.append(written(family))
    if om:
        parts.append(EOF)
    return b"".join(parts)


def _body(registry: CollectorRegistry, accept: str | None, params: dict) -> tuple[bytes, str]:
    encoder, content_type = choose_encoder(accept or "")
    if "name[]" in params:
        registry = registry.restricted_registry(params["name[]"])
    escaping = content_type.partition("escaping=")[2] or UNDERSCORES
    if escaping not in NAME_PRESERVING:
        return encoder(registry), content_type
    om = content_type.startswith("application/openmetrics")
    return _encode(registry, encoder, om), content_type


def metrics_app(
    registry: CollectorRegistry,
) -> Callable[[WSGIEnvironment, StartResponse], Iterator[bytes]]:
    """A WSGI app serving `registry` as prometheus_client's `make_wsgi_app` does (methods,
    negotiation, `name[]`, gzip), through `_encode`."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        method = environ["REQUEST_METHOD"]
        if method == "OPTIONS":
            start_response("200 OK", [("Allow", "OPTIONS,GET")])
            return iter((b"",))
        if method != "GET":
            status = "405 Method Not Allowed"
            start_response(status, [("Allow", "OPTIONS,GET")])
            return iter((f"# HTTP {status}: {method}; use OPTIONS or GET\n".encode(),))
        params = parse_qs(environ.get("QUERY_STRING", ""))
        output, content_type = _body(registry, environ.get("HTTP_ACCEPT"), params)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            output = gzip.compress(output)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return iter((output,))

    return app
