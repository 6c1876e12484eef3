"""The churn blueprint's ``[blueprint]`` table: defaults, the customer mapping and costs
nested in it, and one-line errors naming the key."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelyard.blueprints.churn._config import parse_settings
from modelyard.blueprints.churn._simulate import LAST_LEAVING_DAY
from modelyard.errors import ConfigError

TABLE = """
[blueprint]
name = "churn"
start = "2026-03-01"
seed = 7
drift_day = 45
scores_url = "postgresql://postgres@127.0.0.1/scores"

[blueprint.costs]
missed_churner = 800
retention_offer = 25.5

[blueprint.customers]
path = "accounts.parquet"
id = "account"
label = "left_company"
positive = "1"
contract = "plan"
contract_months = { monthly = 1, annual = 12 }
"""


def test_a_whole_table_reads_with_its_customer_mapping_and_costs() -> None:
    settings = parse_settings(tomllib.loads(TABLE)["blueprint"])
    assert settings.start == datetime(2026, 3, 1, tzinfo=UTC)  # a bare day: 00:00 UTC
    assert (settings.seed, settings.drift_day) == (7, 45)
    assert (settings.costs.missed_churner, settings.costs.retention_offer) == (800, 25.5)
    assert settings.customers.label == "left_company"
    assert settings.customers.contract_months == {"monthly": 1, "annual": 12}
    assert settings.scores_at(Path("/ws")) == "postgresql://postgres@127.0.0.1/scores"


def test_the_defaults_run_on_the_bundled_customers() -> None:
    settings = parse_settings({"name": "churn"})
    assert settings.customers.path == "" and settings.drift_day is None
    assert settings.train_days == 28
    assert settings.scores_at(Path("/ws")) == "sqlite:////ws/.modelyard/churn_scores.db"


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            {"name": "churn", "seeed": 1},
            "blueprint.seeed: unknown key (did you mean 'seed'?); the keys",
        ),
        ({"name": "sentiment"}, "blueprint.name: Input should be 'churn'"),
        (
            {"costs": {"missed_churner": 0}},
            "blueprint.costs.missed_churner: Input should be greater than 0",
        ),
        ({"costs": {"offer": 5}}, "blueprint.costs.offer: unknown key"),
        ({"customers": {"labels": "x"}}, "blueprint.customers.labels: unknown key"),
        ({"start": "next tuesday"}, "blueprint.start"),
        ({"model_name": "churn@prod"}, "blueprint.model_name"),
        ({"train_days": 0}, "blueprint.train_days"),
        ({"start": 20260101}, "blueprint.start: 20260101 is not a day; give one as YYYY-MM-DD"),
        ({"start": "2026-08-01T12:00:00"}, "2026-08-01T12:00:00+00:00 is not the start of a day"),
        ({"drift_day": 241}, "blueprint.drift_day: 241 is out of range: expected a day from 0 to"),
        ({"drift_day": -1}, "blueprint.drift_day: -1 is out of range: expected a day from 0 to"),
    ],
)
def test_a_mistake_is_one_line_naming_the_key(table: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(table, "ws/modelyard.toml")
    message = caught.value.message
    assert message.startswith("ws/modelyard.toml: ") and expected in message, message
    assert "\n" not in message


def test_start_may_be_a_toml_date_and_is_a_utc_midnight() -> None:
    table = tomllib.loads('name = "churn"\nstart = 2026-08-09\n')
    assert parse_settings(table).start == datetime(2026, 8, 9, tzinfo=UTC)


def test_drift_day_may_be_any_day_a_replay_reaches() -> None:
    with pytest.raises(ConfigError, match=f"from 0 to {LAST_LEAVING_DAY} "):
        parse_settings({"drift_day": LAST_LEAVING_DAY + 1})
    assert parse_settings({"drift_day": 0}).drift_day == 0
    assert parse_settings({"drift_day": LAST_LEAVING_DAY}).drift_day == LAST_LEAVING_DAY


@pytest.mark.parametrize(
    ("table", "key", "keys"),
    [
        ({"seeed": 1}, "blueprint.seeed", "name, start, seed, model_name"),
        ({"costs": {"missed": 3}}, "blueprint.costs.missed", "missed_churner, retention_offer"),
        (
            {"customers": {"foo": 1}},
            "blueprint.customers.foo",
            "path, id, label, positive, tenure, monthly_charges, contract, contract_months",
        ),
        ({"events": {"stamp": "t"}}, "blueprint.events.stamp", "path, id, ts, kind, count"),
    ],
)
def test_an_unknown_key_lists_the_keys_of_its_own_table(
    table: dict[str, object], key: str, keys: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(table)
    message = caught.value.message
    assert f"{key}: unknown key" in message and f"; the keys are {keys}" in message, message
    if "." in key.removeprefix("blueprint."):
        assert "drift_day" not in message  # not the [blueprint] table's keys
