"""Generated references are up to date; the README's first screen has the two set-up commands."""

from __future__ import annotations

import re

from exporter.metric_catalog import CATALOG
from exporter.reference_docs import write_references
from tests.conftest import ROOT


def test_generated_references_are_up_to_date() -> None:
    stale = write_references(ROOT, check=True)
    assert stale == [], f"run `model-monitor docs`: {stale}"


def test_readme_first_screen_has_exactly_the_two_commands() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:25])
    block = re.search(r"```sh\n(.*?)```", first_screen, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_metric_names_follow_prometheus_conventions() -> None:
    for spec in CATALOG:
        assert re.fullmatch(r"model_[a-z0-9_]+", spec.name), spec.name
        assert not spec.name.endswith("_total"), "counters get _total from the client"
        assert spec.help.endswith("."), spec.name
        assert "percent" not in spec.name
