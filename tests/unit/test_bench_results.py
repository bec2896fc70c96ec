"""The pure part of ``make bench`` (bench/results.py): ratios, verdicts, the
JSON rows the issue specifies and the table. No processes, no clock."""

from __future__ import annotations

import json
import math

import pytest

from bench.results import (
    ERROR,
    FAIL,
    INFO,
    PASS,
    SKIP,
    Row,
    document,
    percentile,
    ratio_of,
    table,
    verdict,
    write_json,
)

ISSUE_KEYS = {"name", "baseline", "jobsys", "unit", "ratio", "target", "reps"}


def test_ratio_of_a_time_is_ours_over_the_baseline() -> None:
    assert ratio_of(2.0, 3.0, "s") == pytest.approx(1.5)
    assert ratio_of(4.0, 1.0, "ms") == pytest.approx(0.25)


def test_ratio_of_a_rate_is_the_baseline_over_ours() -> None:
    # 600/s raw against 300/s ours is twice as bad, not half.
    assert ratio_of(600.0, 300.0, "per_s") == pytest.approx(2.0)
    assert ratio_of(600.0, 0.0, "per_s") == math.inf


def test_ratio_of_an_unknown_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown unit"):
        ratio_of(1.0, 1.0, "minutes")


def test_pass_means_ratio_at_most_target() -> None:
    assert verdict(1.3, 1.3) == PASS
    assert verdict(1.31, 1.3) == FAIL
    assert verdict(0.2, 1.0) == PASS


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([5.0, 1.0, 3.0], 0) == 1.0
    assert percentile([5.0, 1.0, 3.0], 100) == 5.0
    assert percentile([7.0], 95) == 7.0


def test_a_row_takes_the_medians_of_its_reps() -> None:
    row = Row("map", "s", 1.5, [1.0, 9.0, 2.0], [3.0, 2.5, 100.0])
    assert (row.baseline, row.jobsys) == (2.0, 3.0)
    assert row.ratio == pytest.approx(1.5)
    assert row.result == PASS
    assert row.reps == 3


def test_a_rate_row_fails_when_ours_is_under_the_target_share() -> None:
    row = Row("submits", "per_s", 2.0, [600.0, 620.0, 610.0], [45.0, 44.0, 46.0])
    assert row.ratio == pytest.approx(610.0 / 45.0)
    assert row.result == FAIL
    fast = Row("submits", "per_s", 2.0, [600.0], [400.0])
    assert fast.result == PASS


def test_an_absolute_row_has_the_limit_as_baseline_and_target_one() -> None:
    under = Row.absolute_limit("p99", "ms", 50.0, [40.0, 45.0, 60.0])
    assert (under.baseline, under.target, under.absolute) == (50.0, 1.0, True)
    assert under.ratio == pytest.approx(0.9)
    assert under.result == PASS
    assert Row.absolute_limit("p99", "ms", 50.0, [51.0]).result == FAIL


def test_rows_that_were_not_measured_say_so() -> None:
    assert Row.skipped("pg", "per_s", 2.0, "no PostgreSQL").result == SKIP
    assert Row("broken", "s", 1.0, [1.0], []).result == ERROR
    assert Row("broken", "s", 1.0).ratio is None


def test_a_reference_row_has_its_ratio_and_no_verdict() -> None:
    """The bare app's floor: measured like any row, but neither PASS nor FAIL."""
    floor = Row("floor", "per_s", 2.0, [1000.0], [400.0], reference=True)
    assert floor.ratio == 2.5 and floor.result == INFO
    assert Row("floor", "per_s", 2.0, [1000.0], [900.0], reference=True).result == INFO
    assert Row("floor", "per_s", 2.0, [1000.0], [], reference=True).result == ERROR
    assert "1 INFO" in table([floor], 2) and floor.to_json(2)["result"] == INFO


def test_the_json_is_the_issues_list_of_rows_with_the_core_count() -> None:
    rows = [
        Row("map", "s", 1.3, [1.0, 1.2, 1.1], [1.5, 1.4, 1.6], "note"),
        Row("submits", "per_s", 2.0, [600.0], [300.0]),
        Row.absolute_limit("p99", "ms", 50.0, [10.0]),
        Row.skipped("pg", "per_s", 2.0, "absent"),
    ]
    doc = document(rows, cores=2)
    assert isinstance(doc, list) and len(doc) == 4
    for item in doc:
        assert item.keys() >= ISSUE_KEYS
        assert item["cores"] == 2
        assert item["unit"] in ("s", "ms", "per_s", "MiB")
    first = doc[0]
    assert (first["baseline"], first["jobsys"], first["reps"]) == (1.1, 1.5, 3)
    assert first["ratio"] == pytest.approx(1.5 / 1.1, abs=1e-6)
    assert (first["jobsys_min"], first["jobsys_max"], first["result"]) == (1.4, 1.6, FAIL)
    assert doc[1]["ratio"] == pytest.approx(2.0) and doc[1]["result"] == PASS
    assert (doc[2]["baseline"], doc[2]["target"], doc[2]["absolute"]) == (50.0, 1.0, True)
    assert doc[3]["ratio"] is None and doc[3]["result"] == SKIP
    json.dumps(doc, allow_nan=False)  # no Infinity or NaN: plain JSON


def test_write_json_writes_the_same_document(tmp_path) -> None:
    rows = [Row("map", "s", 1.3, [1.0], [2.0])]
    path = tmp_path / "results.json"
    write_json(path, rows, cores=8)
    assert json.loads(path.read_text()) == document(rows, cores=8)


def test_the_table_has_one_line_per_row_with_figures_and_verdict() -> None:
    rows = [
        Row("map 10,000 no-op items", "s", 1.5, [0.2, 0.21, 0.22], [0.7, 0.6, 0.8]),
        Row.absolute_limit("one call p99", "ms", 50.0, [30.0]),
        Row.skipped("submit throughput, PostgreSQL", "per_s", 2.0, "PostgreSQL absent"),
    ]
    text = table(rows, cores=2)
    lines = text.splitlines()
    assert lines[0].split() == ["work", "unit", "baseline", "jobsys", "ratio", "target", "result"]
    body = {line.split("  ")[0].strip(): line for line in lines[2:5]}
    map_line = body["map 10,000 no-op items"]
    assert "0.21 [0.2-0.22]" in map_line and "0.7 [0.6-0.8]" in map_line
    assert map_line.split()[-3:] == ["3.33", "1.5", "FAIL"]
    assert body["one call p99 *"].split()[-3:] == ["0.6", "1", "PASS"]
    assert body["submit throughput, PostgreSQL"].split()[-1] == SKIP
    assert "3 rows on 2 cores: 1 PASS, 1 FAIL, 1 SKIP" in text
    assert "PostgreSQL absent" in text  # the reason is printed with the table
