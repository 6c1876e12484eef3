"""What the blueprint declares: two entities, three feature views, two feature services.

    user_activity  streaming: fed by ``push`` (the history is its Parquet source); a
                   user's count and mean rating over the last 30 days; ttl 30 days
    user_profile   batch, daily Parquet: a user's ratings so far (count, mean, std)
    movie_stats    batch, daily Parquet: a movie's ratings so far (count, mean)

    rating_v1      the rating model: the user's activity and profile, the movie's stats
    engagement_v1  the engagement model: the user's activity and profile

``user_activity:ratings_30d`` (and the profile) is read by both models: one definition,
one computation, offline and online. ``DEFAULTS`` are what a missing or expired value
means, used the same way in training sets and by the server (``FeatureBinding``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from modelyard.blueprints.featurestore._aggregates import ACTIVITY, MOVIE, PROFILE
from modelyard.features import (
    Entity,
    FeatureService,
    FeatureView,
    FileSource,
    NullRate,
    Range,
    UniqueKeys,
)

ACTIVITY_VIEW = "user_activity"
PROFILE_VIEW = "user_profile"
MOVIE_VIEW = "movie_stats"
RATING_SERVICE = "rating_v1"
ENGAGEMENT_SERVICE = "engagement_v1"
SHARED = f"{ACTIVITY_VIEW}:ratings_30d"
RATING_FEATURES = [*ACTIVITY, *PROFILE, *MOVIE]
ENGAGEMENT_FEATURES = [*ACTIVITY, *PROFILE]
# A user with no rating in 30 days has none in the window (the view's row has expired);
# a user or movie never rated has no totals. Means default to MovieLens' overall mean.
DEFAULTS: dict[str, float] = {
    "ratings_30d": 0,
    "mean_rating_30d": 3.5,
    "ratings_total": 0,
    "mean_rating": 3.5,
    "rating_std": 0.0,
    "movie_ratings": 0,
    "movie_mean_rating": 3.5,
}


def folders(root: Path) -> dict[str, Path]:
    """Each view's source folder in the workspace's ``data/``."""
    return {view: root / "data" / view for view in (ACTIVITY_VIEW, PROFILE_VIEW, MOVIE_VIEW)}


def _stars(feature: str) -> Range:
    return Range(feature, min=0.5, max=5.0)


def definitions(root: Path) -> list[Entity | FeatureView | FeatureService]:
    """Everything ``ws.features.apply`` stores for the blueprint (sources under ``root``)."""
    paths = folders(root)
    user = Entity("user", {"user_id": "int64"}, "a MovieLens user")
    movie = Entity("movie", {"movie_id": "int64"}, "a MovieLens movie")
    activity = FeatureView(
        ACTIVITY_VIEW,
        entity=user,
        source=FileSource(str(paths[ACTIVITY_VIEW])),
        features={"ratings_30d": "int64", "mean_rating_30d": "float64"},
        ttl=timedelta(days=30),  # an older row counts ratings that left the window
        owner="activity-stream",
        description="ratings in the last 30 days, updated by every rating (push)",
        tags={"kind": "streaming"},
        checks=(
            Range("ratings_30d", min=1),
            _stars("mean_rating_30d"),
            NullRate("ratings_30d"),
            NullRate("mean_rating_30d"),
            UniqueKeys(),
        ),
    )
    profile = FeatureView(
        PROFILE_VIEW,
        entity=user,
        source=FileSource(str(paths[PROFILE_VIEW])),
        features={"ratings_total": "int64", "mean_rating": "float64", "rating_std": "float64"},
        owner="batch-team",
        description="every rating of the user so far, as of the end of each day",
        tags={"kind": "batch"},
        checks=(
            Range("ratings_total", min=1),
            _stars("mean_rating"),
            Range("rating_std", min=0.0, max=2.25),
            NullRate("mean_rating"),
            UniqueKeys(),
        ),
    )
    stats = FeatureView(
        MOVIE_VIEW,
        entity=movie,
        source=FileSource(str(paths[MOVIE_VIEW])),
        features={"movie_ratings": "int64", "movie_mean_rating": "float64"},
        owner="batch-team",
        description="every rating of the movie so far, as of the end of each day",
        tags={"kind": "batch"},
        checks=(
            Range("movie_ratings", min=1),
            _stars("movie_mean_rating"),
            NullRate("movie_ratings"),
            NullRate("movie_mean_rating"),
            UniqueKeys(),
        ),
    )
    rating = FeatureService(
        RATING_SERVICE,
        [f"{view.name}:{f}" for view in (activity, profile, stats) for f in view.feature_names],
        "what the rating model reads: the user's activity and profile, the movie's stats",
    )
    engagement = FeatureService(
        ENGAGEMENT_SERVICE,
        [f"{view.name}:{f}" for view in (activity, profile) for f in view.feature_names],
        "what the engagement model reads: the user's activity and profile",
    )
    return [user, movie, activity, profile, stats, rating, engagement]
