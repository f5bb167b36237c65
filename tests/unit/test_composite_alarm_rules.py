"""Composite alarm rules as CloudWatch reads them, and the percentile-rank statistic."""

from __future__ import annotations

import pytest

from mlcycle.local.cloudwatch.alarms import UnsupportedAlarmError, _statistic
from mlcycle.local.cloudwatch.composite import (
    AllOf,
    AnyOf,
    Constant,
    Not,
    RuleSyntaxError,
    StateIs,
    alarm_name,
    evaluate_rule,
    parse_rule,
    references,
)

ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:"
STATES = {"a": "ALARM", "b": "OK", "c": "INSUFFICIENT_DATA", "long window": "ALARM"}


def holds(rule: str) -> bool:
    return evaluate_rule(parse_rule(rule), lambda ref: STATES[alarm_name(ref)])


def test_the_cdk_all_of_rule_by_arn() -> None:
    rule = parse_rule(f'(ALARM("{ARN}a") AND ALARM("{ARN}b"))')
    assert rule == AllOf((StateIs("ALARM", f"{ARN}a"), StateIs("ALARM", f"{ARN}b")))
    assert references(rule) == [f"{ARN}a", f"{ARN}b"]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("ALARM(a)", True),
        ('ALARM("a")', True),
        ("OK(a)", False),
        ("OK(b) AND INSUFFICIENT_DATA(c)", True),
        ("ALARM(a) AND ALARM(b)", False),
        ("ALARM(a) OR ALARM(b)", True),
        ("NOT ALARM(b)", True),
        ("NOT (ALARM(a) OR ALARM(b))", False),
        ("TRUE AND NOT FALSE", True),
        ("ALARM(b) OR ALARM(a) AND OK(b)", True),  # AND binds tighter: b OR (a AND b-ok)
        ("(ALARM(b) OR ALARM(a)) AND OK(a)", False),
        ('alarm("long window") and not ok(a)', True),  # keywords in any case; names with spaces quoted
        (f"ALARM({ARN}a) AND OK({ARN}b)", True),
    ],
)
def test_rules_evaluate_as_boolean_logic_over_child_states(rule: str, expected: bool) -> None:
    assert holds(rule) is expected


def test_precedence_and_nesting_parse_to_the_expected_tree() -> None:
    rule = parse_rule("NOT ALARM(a) OR ALARM(b) AND (TRUE OR OK(c))")
    assert rule == AnyOf(
        (
            Not(StateIs("ALARM", "a")),
            AllOf((StateIs("ALARM", "b"), AnyOf((Constant(True), StateIs("OK", "c"))))),
        )
    )
    assert references(rule) == ["a", "b", "c"]


@pytest.mark.parametrize(
    "rule", ["", "ALARM(a", "ALARM()", "ALARM(a) AND", "ALARM(a) ALARM(b)", "MAYBE(a)", "(TRUE", "TRUE)"]
)
def test_malformed_rules_are_refused(rule: str) -> None:
    with pytest.raises(RuleSyntaxError):
        parse_rule(rule)


def test_percentile_rank_is_the_share_above_low_and_at_most_high() -> None:
    values = [100.0, 200.0, 300.0, 400.0]
    assert _statistic(values, "PR(:300)") == 75.0  # the upper bound is inclusive
    assert _statistic(values, "PR(100:300)") == 50.0  # the lower bound is not
    assert _statistic(values, "PR(250:)") == 50.0
    assert _statistic(values, "PR(:500000)") == 100.0
    assert _statistic([], "PR(:300)") is None  # no data: no value
    with pytest.raises(UnsupportedAlarmError):
        _statistic(values, "PR(10%:90%)")
    with pytest.raises(UnsupportedAlarmError):
        _statistic(values, "TM(10:90)")
