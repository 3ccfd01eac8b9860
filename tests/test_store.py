"""The PostgreSQL store's statements: named parameters become asyncpg's numbered ones."""

from __future__ import annotations

from cancelnotify.store import Statement


def test_named_parameters_are_numbered_once_each_in_order() -> None:
    s = Statement("SELECT :a, CAST(:b AS text), :a WHERE x = :c")
    assert s.sql == "SELECT $1, CAST($2 AS text), $1 WHERE x = $3"
    assert s.args({"c": 3, "b": "two", "a": 1}) == [1, "two", 3]


def test_casts_and_clock_times_are_not_parameters() -> None:
    s = Statement("SELECT now()::date, '10:30' AS t, :when")
    assert s.sql == "SELECT now()::date, '10:30' AS t, $1"
