"""Built-in extensions go through the public door and are each tested and documented."""

from __future__ import annotations

from pathlib import Path

import modelyard.registry as registry

ROOT = Path(__file__).resolve().parents[1]


def test_every_builtin_flavor_is_registered_through_the_public_api() -> None:
    assert {"sklearn", "python"} <= set(registry.FLAVORS)
    for name, flavor in registry.FLAVORS.items():
        assert registry.get_flavor(name) is flavor


def test_every_builtin_flavor_is_tested_and_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    tests = "".join(
        (ROOT / "tests" / name).read_text()
        for name in (
            "test_registry.py",
            "test_flavors.py",
            "test_text_flavor.py",
            "test_image_flavor.py",
            "test_team_server.py",  # the mlflow flavor: versions MLflow clients registered
        )
    )
    for name in registry.FLAVORS:
        assert f"`{name}`" in readme, f"flavor {name!r} is not documented in README.md"
        assert f'"{name}"' in tests, (
            f"flavor {name!r} has no test in test_registry/test_flavors/test_text_flavor"
        )
