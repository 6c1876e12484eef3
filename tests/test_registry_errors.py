"""Registry errors: bad names and references, missing models, and nothing half-written."""

from __future__ import annotations

import pytest

import modelyard
from modelyard.backends.metadata import tables as t
from modelyard.errors import (
    ConflictError,
    InvalidInputError,
    ModelyardError,
    NotFoundError,
    SchemaValidationError,
)
from modelyard.registry import LoggedModel
from registry_support import EXAMPLE, count_rows, double, log_model

# -- errors -------------------------------------------------------------------------------


def test_unknown_model_suggests_the_nearest_name(
    workspace: modelyard.Workspace, logged: LoggedModel
) -> None:
    workspace.registry.register("breast-cancer", logged)
    with pytest.raises(NotFoundError, match="did you mean 'breast-cancer'") as caught:
        workspace.registry.get("breast-cancr")
    assert isinstance(caught.value, LookupError)
    assert caught.value.status == 404 and caught.value.code == "not_found"
    with pytest.raises(NotFoundError, match="model 'zzz' is not registered; register one"):
        workspace.registry.versions("zzz")
    with pytest.raises(NotFoundError, match="did you mean 'breast-cancer'"):
        workspace.registry.load("breast_cancer@production")


def test_unknown_version_and_alias_say_what_exists(
    workspace: modelyard.Workspace, logged: LoggedModel
) -> None:
    reg = workspace.registry
    reg.register("bc", logged)
    reg.register("bc", logged)
    with pytest.raises(NotFoundError, match=r"model 'bc' has no version 7; it has versions 1\.\.2"):
        reg.get("bc/7")
    with pytest.raises(NotFoundError, match=r"its aliases: none\); set it with"):
        reg.get("bc@prod")
    reg.set_alias("bc", "production", 1)
    reg.set_alias("bc", "staging", 2)
    with pytest.raises(NotFoundError) as caught:
        reg.load("bc@prod")
    assert str(caught.value) == (
        "model 'bc' has no alias 'prod' (its aliases: production -> 1, staging -> 2); "
        "set it with 'modelyard models alias bc prod VERSION'"
    )


@pytest.mark.parametrize("name", ["", "has space", "-leading-dash", "a/b", "x@y", "é", "a" * 251])
def test_invalid_model_names_are_rejected(sqlite_workspace: modelyard.Workspace, name: str) -> None:
    logged = log_model(sqlite_workspace, double, EXAMPLE)
    with pytest.raises(InvalidInputError, match="is not valid|is empty|must be a positive"):
        sqlite_workspace.registry.register(name, logged)
    if "@" not in name and "/" not in name:  # those parse as NAME@ALIAS and NAME/VERSION
        with pytest.raises(ValueError):
            sqlite_workspace.registry.get(name)
    assert sqlite_workspace.registry.list() == []


@pytest.mark.parametrize("alias", ["latest", "1st", "has space", "a.b", "", "x" * 101])
def test_invalid_aliases_are_rejected(sqlite_workspace: modelyard.Workspace, alias: str) -> None:
    sqlite_workspace.registry.register("bc", log_model(sqlite_workspace, double, EXAMPLE))
    with pytest.raises(InvalidInputError, match=r"alias .* is not valid.*'latest' is reserved"):
        sqlite_workspace.registry.set_alias("bc", alias, 1)
    assert sqlite_workspace.registry.list()[0].aliases == {}


@pytest.mark.parametrize("ref", ["bc/0", "bc/-1", "bc/two", "bc/"])
def test_bad_version_references_are_rejected(
    sqlite_workspace: modelyard.Workspace, ref: str
) -> None:
    with pytest.raises(InvalidInputError, match="must be a positive integer"):
        sqlite_workspace.registry.get(ref)


def test_log_model_needs_a_signature_or_an_example(sqlite_workspace: modelyard.Workspace) -> None:
    with sqlite_workspace.start_run("train") as run:
        with pytest.raises(InvalidInputError, match="pass input_example=") as caught:
            sqlite_workspace.registry.log_model(run, double)
    assert isinstance(caught.value, ValueError)
    assert sqlite_workspace.runs.get(run.run_id).artifacts == []


def test_a_model_no_flavor_accepts_is_rejected(sqlite_workspace: modelyard.Workspace) -> None:
    with sqlite_workspace.start_run("train") as run:
        with pytest.raises(InvalidInputError, match="no flavor can save a object; pass flavor="):
            sqlite_workspace.registry.log_model(run, object(), input_example=EXAMPLE)
        with pytest.raises(InvalidInputError, match="unknown flavor 'onnx'; available: .*python"):
            sqlite_workspace.registry.log_model(run, double, input_example=EXAMPLE, flavor="onnx")
    assert sqlite_workspace.runs.get(run.run_id).artifacts == []


def test_register_rejects_a_source_that_is_not_a_model(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    with pytest.raises(InvalidInputError, match="pass a LoggedModel or 'runs:/RUN_ID/PATH'"):
        sqlite_workspace.registry.register("bc", "/tmp/model.pkl")
    with sqlite_workspace.start_run("train") as run:
        run.log_text("not a model", "model")
    with pytest.raises(NotFoundError, match=f"run '{run.run_id}' has no model at 'model'"):
        sqlite_workspace.registry.register("bc", f"runs:/{run.run_id}/model")
    assert sqlite_workspace.registry.list() == []


def test_every_error_is_a_modelyard_error_with_a_code() -> None:
    for cls, builtin in [
        (NotFoundError, LookupError),
        (InvalidInputError, ValueError),
        (SchemaValidationError, ValueError),
        (ConflictError, RuntimeError),
    ]:
        assert issubclass(cls, ModelyardError) and issubclass(cls, builtin)
        assert cls.code != ModelyardError.code


# -- nothing half-written -----------------------------------------------------------------


def test_failed_registration_leaves_nothing_behind(
    workspace: modelyard.Workspace, logged: LoggedModel
) -> None:
    reg = workspace.registry
    with pytest.raises(NotFoundError, match="run 'f00' has no model at 'model'"):
        reg.register("bc", "runs:/f00/model")
    ghost = LoggedModel("0" * 32, "model", logged.artifact, logged.flavor, logged.signature)
    with pytest.raises(NotFoundError, match=f"run '{'0' * 32}' does not exist"):
        reg.register("bc", ghost)
    assert (
        count_rows(workspace, t.registered_models),
        count_rows(workspace, t.model_versions),
    ) == (0, 0)
    assert reg.list() == []

    # A failure on an existing model does not use up a version number either.
    assert reg.register("bc", logged).version == 1
    with pytest.raises(NotFoundError):
        reg.register("bc", ghost)
    assert reg.register("bc", logged).version == 2
    assert [v.version for v in reg.versions("bc")] == [1, 2]


def test_deleting_an_alias_of_an_unknown_model_says_the_model_is_unknown(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    with pytest.raises(NotFoundError, match="model 'ghost' is not registered"):
        sqlite_workspace.registry.delete_alias("ghost", "production")
