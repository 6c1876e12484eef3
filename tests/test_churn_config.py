"""The churn blueprint's ``[blueprint]`` table: defaults, the customer mapping and costs
nested in it, and one-line errors naming the key."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelyard.blueprints.churn._config import parse_settings
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
            "blueprint.seeed: Extra inputs are not permitted; the keys",
        ),
        ({"name": "sentiment"}, "blueprint.name: Input should be 'churn'"),
        (
            {"costs": {"missed_churner": 0}},
            "blueprint.costs.missed_churner: Input should be greater than 0",
        ),
        ({"costs": {"offer": 5}}, "blueprint.costs.offer: Extra inputs"),
        ({"customers": {"labels": "x"}}, "blueprint.customers.labels: Extra inputs"),
        ({"start": "next tuesday"}, "blueprint.start"),
        ({"model_name": "churn@prod"}, "blueprint.model_name"),
        ({"train_days": 0}, "blueprint.train_days"),
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
