"""Settings: argument > MODELYARD_* env > modelyard.toml > default; errors name the source."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from modelyard.config import CONFIG_FILE, SETTINGS, Setting, load_config, render_template
from modelyard.errors import ConfigError


def write_config(root: Path, text: str) -> Path:
    path = root / CONFIG_FILE
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, environ={})

    assert dict(cfg) == {s.key: s.default for s in SETTINGS}
    assert {cfg.source(s.key) for s in SETTINGS} == {"default"}


def test_each_layer_beats_the_one_below_and_is_named_as_the_source(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[serve]\nhost = "file-host"\nport = 9001\nlog_level = "debug"\n'
        '[tracking]\nexperiment = "from-file"\n',
    )
    environ = {"MODELYARD_SERVE_HOST": "env-host", "MODELYARD_SERVE_PORT": "9002"}

    cfg = load_config(tmp_path, environ=environ, serve_host="arg-host")

    assert cfg["serve.host"] == "arg-host"  # argument beats env and file
    assert cfg.source("serve.host") == "argument"
    assert cfg["serve.port"] == 9002  # env beats file, and is parsed to int
    assert cfg.source("serve.port") == "env MODELYARD_SERVE_PORT"
    assert cfg["tracking.experiment"] == "from-file"  # file beats default
    assert cfg.source("tracking.experiment") == f"file {path.resolve()}"
    assert cfg["metadata.url"] == "sqlite:///.modelyard/meta.db"
    assert cfg.source("metadata.url") == "default"
    assert cfg.describe("serve.port") == "serve.port (env MODELYARD_SERVE_PORT) = 9002"


def test_argument_of_none_leaves_the_lower_layers_in_place(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, environ={"MODELYARD_SERVE_PORT": "7000"}, serve_port=None)

    assert cfg["serve.port"] == 7000
    assert cfg.source("serve.port") == "env MODELYARD_SERVE_PORT"


def test_config_reads_the_real_environment_only_when_no_environ_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_TRACKING_EXPERIMENT", "from-os")

    assert load_config(tmp_path)["tracking.experiment"] == "from-os"
    assert load_config(tmp_path, environ={})["tracking.experiment"] == "default"


def test_config_is_a_mapping_that_answers_in_and_get_for_unknown_keys(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, environ={})

    assert "serve.port" in cfg
    assert "serve.prot" not in cfg
    assert cfg.get("serve.prot") is None
    assert cfg.get("serve.port") == 8000
    with pytest.raises(ConfigError, match=r"unknown setting 'serve\.prot'.*'serve\.port'"):
        cfg["serve.prot"]


def test_unknown_key_in_file_names_the_key_and_the_nearest_valid_one(tmp_path: Path) -> None:
    write_config(tmp_path, "[serve]\nprot = 9000\n")

    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})

    message = str(info.value)
    assert "'serve.prot'" in message
    assert "did you mean 'serve.port'?" in message
    assert CONFIG_FILE in message


def test_key_outside_a_section_in_file_is_rejected(tmp_path: Path) -> None:
    write_config(tmp_path, "port = 9000\n")

    with pytest.raises(ConfigError, match=r"top-level key 'port' must be a \[section\]"):
        load_config(tmp_path, environ={})


def test_unknown_env_var_names_the_nearest_valid_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={"MODELYARD_METADATA_ULR": "sqlite:///x.db"})

    message = str(info.value)
    assert "MODELYARD_METADATA_ULR" in message
    assert "did you mean 'MODELYARD_METADATA_URL'?" in message


def test_env_vars_without_our_prefix_or_not_settings_are_ignored(tmp_path: Path) -> None:
    environ = {"MODELYARD_WORKSPACE": str(tmp_path), "PATH": "/bin", "SERVE_PORT": "abc"}

    assert dict(load_config(tmp_path, environ=environ)) == {s.key: s.default for s in SETTINGS}


def test_unknown_argument_names_the_nearest_setting(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown setting 'serve_prot'; did you mean 'serve\.port'"
    ):
        load_config(tmp_path, environ={}, serve_prot=1)


def test_unparsable_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[serve\nport = 1\n")

    with pytest.raises(ConfigError, match="cannot parse TOML") as info:
        load_config(tmp_path, environ={})

    assert str(path.resolve()) in str(info.value)


def test_wrong_type_in_env_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={"MODELYARD_SERVE_PORT": "abc"})

    message = str(info.value)
    assert "MODELYARD_SERVE_PORT (env)" in message
    assert "'abc'" in message
    assert "expected int" in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[serve]\nport = "abc"\n', "serve.port = 'abc': expected int"),
        ("[metadata]\nurl = 5\n", "metadata.url = 5: expected str, got int"),
        ("[serve]\nport = true\n", "serve.port = True: expected int, got bool"),
        ("[serve]\nport = 80.5\n", "serve.port = 80.5: expected int, got float"),
    ],
)
def test_wrong_type_in_file_names_the_file(tmp_path: Path, body: str, expected: str) -> None:
    write_config(tmp_path, body)

    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})

    message = str(info.value)
    assert message.startswith(f"{CONFIG_FILE}: ")
    assert expected in message


def test_wrong_type_in_argument_names_the_argument(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^argument serve\.port = 'x': expected int"):
        load_config(tmp_path, environ={}, serve_port="x")


def test_value_outside_the_choices_is_rejected_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={"MODELYARD_SERVE_LOG_LEVEL": "loud"})

    message = str(info.value)
    assert "MODELYARD_SERVE_LOG_LEVEL (env)" in message
    assert "debug, info, warning, error" in message


def test_every_setting_can_be_set_by_its_env_var(tmp_path: Path) -> None:
    values = {
        s.key: ("9123" if s.type in (int, float) else s.choices[-1] if s.choices else f"v-{s.key}")
        for s in SETTINGS
    }

    cfg = load_config(tmp_path, environ={s.env: values[s.key] for s in SETTINGS})

    for s in SETTINGS:
        assert cfg.source(s.key) == f"env {s.env}"
        assert cfg[s.key] == s.type(values[s.key])


def _uncomment_settings(template: str) -> str:
    """Uncomment each ``# key = value`` line of the template (not the prose comments)."""
    out = []
    for line in template.splitlines():
        body = line.removeprefix("# ")
        name = body.split(" = ", 1)[0]
        if line.startswith("# ") and " = " in body and name.isidentifier():
            out.append(body)
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def test_template_is_valid_toml_and_lists_every_setting_with_its_default() -> None:
    template = render_template()

    # Only the section headers are live: every setting is commented out.
    assert all(body == {} for body in tomllib.loads(template).values())
    parsed = tomllib.loads(_uncomment_settings(template))
    flat = {
        f"{section}.{name}": value
        for section, body in parsed.items()
        for name, value in body.items()
    }
    assert flat == {s.key: s.default for s in SETTINGS}
    for s in SETTINGS:
        assert s.env in template  # each setting documents its variable


def test_template_as_written_loads_as_the_defaults(tmp_path: Path) -> None:
    write_config(tmp_path, render_template())

    cfg = load_config(tmp_path, environ={})

    assert dict(cfg) == {s.key: s.default for s in SETTINGS}
    assert {cfg.source(s.key) for s in SETTINGS} == {"default"}


def test_uncommented_template_loads_as_the_defaults(tmp_path: Path) -> None:
    write_config(tmp_path, _uncomment_settings(render_template()))

    cfg = load_config(tmp_path, environ={})

    assert dict(cfg) == {s.key: s.default for s in SETTINGS}
    assert {cfg.source(s.key) for s in SETTINGS} == {f"file {tmp_path.resolve() / CONFIG_FILE}"}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
def test_template_lines_uncommented_one_at_a_time_still_parse(setting: Setting) -> None:
    key = setting.key
    section, name = key.split(".", 1)
    lines = render_template().splitlines()
    current = ""
    for i, line in enumerate(lines):
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line.startswith(f"# {name} = "):
            lines[i] = line.removeprefix("# ")
            break
    else:
        pytest.fail(f"the template has no line for {key}")

    parsed = tomllib.loads("\n".join(lines))

    assert parsed[section] == {name: setting.default}
    assert all(body == {} for head, body in parsed.items() if head != section)


def test_a_quoted_number_in_the_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text('[serve]\nport = "8080"\n')
    with pytest.raises(ConfigError, match=r"modelyard.toml.*serve.port.*expected int"):
        load_config(tmp_path, environ={})
