"""The HappyHorse view's I/O-free parts: HTTP byte ranges, and the plugin's registration."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_provider_happyhorse.ui.plugin import view_available
from airflow_provider_happyhorse.ui.ranges import UnsatisfiableRange, byte_range


@pytest.mark.parametrize(
    ("header", "size", "wanted"),
    [
        (None, 1000, None),
        ("", 1000, None),
        ("bytes=0-99", 1000, (0, 99)),
        ("bytes=100-", 1000, (100, 999)),
        ("bytes=-10", 1000, (990, 999)),
        ("bytes=-5000", 1000, (0, 999)),
        ("bytes=900-5000", 1000, (900, 999)),
        ("BYTES=1-2", 1000, (1, 2)),
        ("items=0-1", 1000, None),  # another unit: the whole file
        ("bytes=0-1, 5-6", 1000, None),  # several ranges: the whole file
        ("bytes=a-b", 1000, None),
    ],
)
def test_byte_ranges(header: str | None, size: int, wanted: tuple[int, int] | None) -> None:
    assert byte_range(header, size) == wanted


@pytest.mark.parametrize(("header", "size"), [("bytes=1000-", 1000), ("bytes=5-2", 1000), ("bytes=-0", 1000)])
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(UnsatisfiableRange):
        byte_range(header, size)


@pytest.mark.skipif(not view_available(), reason="Airflow 3.0 has no external views: the plugin offers nothing")
def test_the_plugin_offers_the_view_and_imports_no_fastapi_code() -> None:
    code = (
        "import sys; from airflow_provider_happyhorse.ui.plugin import HappyHorsePlugin as P;"
        "print(P.fastapi_apps[0]['url_prefix'], P.external_views[0]['name'], P.external_views[0]['href'],"
        "'airflow_provider_happyhorse.ui.app' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["/happyhorse", "HappyHorse", "/happyhorse/", "False"]


class Said:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: object) -> None:
        self.lines.append(message % args)


def test_on_an_airflow_without_external_views_the_plugin_offers_nothing_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_happyhorse.ui import plugin

    said = Said()
    monkeypatch.setattr(plugin, "_airflow_version", lambda: (3, 0))
    monkeypatch.setattr(plugin, "log", said)
    assert plugin._supported() is False
    assert plugin.view_available() is False
    [line] = said.lines
    assert "needs Airflow 3.1 or newer" in line
    assert "Everything else of the provider works" in line
