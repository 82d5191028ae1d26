"""The Reports page's charts: inline SVG built on the server, its scale, and the periods around it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from parley_onboarding.console import charts, i18n
from parley_onboarding.console import reports as report_page
from parley_onboarding.console.charts import PLOT_H, TOP, Point, scale_for

pytestmark = pytest.mark.unit

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))  # noqa: S314 - markup this test built itself


def bars(root: ET.Element) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}rect") if e.get("class") == "bar"]


def test_the_scale_starts_at_zero_and_ends_on_a_round_step_above_the_highest_value() -> None:
    assert scale_for([3, 7, 2], whole=True) == charts.Scale(8.0, (0.0, 2.0, 4.0, 6.0, 8.0))
    assert scale_for([0.4, 1.3]) == charts.Scale(1.5, (0.0, 0.5, 1.0, 1.5))
    assert scale_for([100.0]).top == 100.0
    assert scale_for([101.0]).top == 150.0
    # counts never get a gridline between whole numbers
    assert scale_for([1, 0], whole=True) == charts.Scale(1.0, (0.0, 1.0))
    assert scale_for([3], whole=True).ticks == (0.0, 1.0, 2.0, 3.0)


def test_an_empty_or_all_zero_series_still_has_an_axis() -> None:
    for values in ([], [None, None], [0, 0]):
        assert scale_for(values) == charts.Scale(1.0, (0.0, 1.0))


def test_each_bar_is_as_tall_as_its_value_on_the_scale() -> None:
    points = [Point("Mon", 0), Point("Tue", 5), Point("Wed", 10)]
    root = parse(charts.svg("c", "Created", "three days", points, whole=True))
    heights = [float(b.get("height", "")) for b in bars(root)]
    assert heights == pytest.approx([0.0, PLOT_H / 2, PLOT_H])
    tallest = bars(root)[2]
    assert float(tallest.get("y", "")) == pytest.approx(TOP)  # the top of the plot is the scale's 10
    # each bar says its period and value to whoever points at it
    assert [b.findtext(f"{SVG}title") for b in bars(root)] == ["Mon: 0", "Tue: 5", "Wed: 10"]
    # left to right in the periods' order, none overlapping
    xs = [float(b.get("x", "")) for b in bars(root)]
    widths = [float(b.get("width", "")) for b in bars(root)]
    assert xs == sorted(xs) and all(x + w < nxt for x, w, nxt in zip(xs, widths, xs[1:], strict=False))


def test_the_chart_is_an_image_named_by_its_title_and_description() -> None:
    root = parse(charts.svg("chart-x", "Replies <by> agents", "a & b", [Point("d1", 1)]))
    assert root.get("role") == "img"
    assert (root.get("aria-labelledby"), root.get("aria-describedby")) == ("chart-x-title", "chart-x-desc")
    assert root.find(f"{SVG}title") is not None
    assert root.findtext(f"{SVG}title") == "Replies <by> agents"  # escaped in the markup, whole here
    assert root.findtext(f"{SVG}desc") == "a & b"
    assert "style" not in str(charts.svg("c", "t", "d", [Point("d1", 1)]))  # the CSP allows no inline style


def test_one_period_is_one_bar_of_a_sensible_width_with_its_label_centred() -> None:
    root = parse(charts.svg("c", "t", "d", [Point("27.03.2026", 4)], whole=True))
    [bar] = bars(root)
    assert float(bar.get("width", "")) == charts.MAX_BAR_W
    labels = [t for t in root.iter(f"{SVG}text") if t.get("class") == "period"]
    assert [(t.text, t.get("text-anchor")) for t in labels] == [("27.03.2026", "middle")]


def test_a_line_joins_the_measured_periods_and_skips_the_unmeasured() -> None:
    points = [Point("a", 2.0), Point("b", None), Point("c", 4.0)]
    root = parse(charts.svg("c", "t", "d", points, kind="line"))
    circles = list(root.iter(f"{SVG}circle"))
    assert [c.get("data-value") for c in circles] == ["2", "4"]
    [line] = list(root.iter(f"{SVG}polyline"))
    assert len(line.get("points", "").split()) == 2
    # the higher value is drawn higher (smaller y)
    assert float(circles[1].get("cy", "")) < float(circles[0].get("cy", ""))


def test_a_line_of_one_point_is_a_point_and_an_empty_one_is_nothing() -> None:
    one = parse(charts.svg("c", "t", "d", [Point("a", 3.0)], kind="line"))
    assert len(list(one.iter(f"{SVG}circle"))) == 1 and not list(one.iter(f"{SVG}polyline"))
    empty = parse(charts.svg("c", "t", "d", [Point("a", None), Point("b", None)], kind="line"))
    assert not list(empty.iter(f"{SVG}circle")) and not list(empty.iter(f"{SVG}polyline"))
    assert [t.text for t in empty.iter(f"{SVG}text") if t.get("class") == "period"] == ["a", "b"]


def test_the_periods_of_a_range_are_those_the_reports_service_forms() -> None:
    paris = ZoneInfo("Europe/Paris")
    start, end = datetime(2026, 3, 28, tzinfo=paris), datetime(2026, 3, 30, tzinfo=paris)
    days = report_page.periods(start, end, paris, "day")
    assert days == [datetime(2026, 3, 28, tzinfo=paris), datetime(2026, 3, 29, tzinfo=paris)]
    # the night the clocks move forward has 23 hours, each named once
    hours = report_page.periods(start, end, paris, "hour")
    assert len(hours) == 47 and len(set(hours)) == 47
    weeks = report_page.periods(start, datetime(2026, 4, 7, tzinfo=paris), paris, "week")
    assert [w.date() for w in weeks] == [date(2026, 3, 23), date(2026, 3, 30), date(2026, 4, 6)]


def test_a_period_without_a_row_counts_zero_and_durations_are_minutes() -> None:
    i18n.use("en")
    empty_timing = {"count": 0, "median_s": None, "p90_s": None, "within_target": None}
    activity = {
        "conversations_created": 2,
        "conversations_reopened": 0,
        "inbound_messages": 3,
        "replies_human": 1,
        "replies_automated": 0,
        "resolved_by_agent": 0,
        "resolved_automatically": 0,
        "first_response": {"count": 1, "median_s": 300.0, "p90_s": 300.0, "within_target": None},
        "reply_time": empty_timing,
        "resolution": empty_timing,
    }
    answer = {
        "time_zone": "UTC",
        "start": "2026-03-26T00:00:00+00:00",
        "end": "2026-03-28T00:00:00+00:00",
        "rows": [{"period_start": "2026-03-27T00:00:00+00:00", "group": "all", "activity": activity}],
        "total": activity,
    }
    found = {m.key: m for m in report_page.measures(answer, "day")}
    assert found["conversations_created"].rows == [("2026-03-26", "0"), ("2026-03-27", "2")]
    assert found["first_response"].rows == [("2026-03-26", "-"), ("2026-03-27", "5")]
    assert found["resolution"].total == "none measured"
    assert set(found) == {k for k, _ in report_page.COUNTS} | {k for k, _ in report_page.DURATIONS}


def test_the_form_defaults_to_the_last_seven_days_and_refuses_long_hourly_ranges() -> None:
    i18n.use("en")
    today = datetime(2026, 3, 27, tzinfo=UTC).date()
    query = report_page.query_from({}, today)
    assert (query.first, query.last, query.bucket, query.tz, query.errors) == (
        "2026-03-21",
        "2026-03-27",
        "day",
        "UTC",
        {},
    )
    assert "bucket" in report_page.query_from({"from": "2026-03-01", "bucket": "hour"}, today).errors
    assert "from" in report_page.query_from({"from": "27.03.2026"}, today).errors


def test_numbers_are_written_without_exponents_and_with_the_language_s_decimal_mark() -> None:
    i18n.use("en")
    assert [report_page.number(v) for v in (1234567.0, 5.04, 0.25, 0.0)] == ["1234567", "5", "0.2", "0"]
    i18n.use("de")
    try:
        assert report_page.number(2.5) == "2,5"
    finally:
        i18n.use("en")
