"""Configuration: defaults, file, environment and CLI layers; the documented file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import assert_one_line_error, run_agent

import glasses_agent
from glasses_agent.config import Config, load_config, masked_dict
from glasses_agent.errors import BadInputError

DEFAULTS = Path(glasses_agent.__file__).with_name("default_config.toml")


def test_documented_file_matches_the_defaults() -> None:
    from_file = load_config(DEFAULTS, environ={})
    assert from_file == Config()
    import tomllib

    documented = tomllib.loads(DEFAULTS.read_text())
    assert set(documented) == set(masked_dict(Config()))
    for section, values in masked_dict(Config()).items():
        assert set(documented[section]) == set(values), section


def test_layers_apply_in_order(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[asr]\nmodel = "base"\n[vad]\nmin_silence_s = 0.8\n')
    env = {"GLASSES_AGENT_VAD__MIN_SILENCE_S": "0.9", "GLASSES_AGENT_GATEWAY__PORT": "9000"}
    config = load_config(file, environ=env, overrides=["gateway.port=9100"])
    assert config.asr.model == "base"
    assert config.vad.min_silence_s == 0.9
    assert config.gateway.port == 9100


def test_bad_values_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="unknown key asr.modle"):
        load_config(environ={}, overrides=["asr.modle=base"])
    with pytest.raises(BadInputError, match="gateway.port"):
        load_config(environ={"GLASSES_AGENT_GATEWAY__PORT": "eighty"})
    with pytest.raises(BadInputError, match="section.key=value"):
        load_config(environ={}, overrides=["port"])
    broken = tmp_path / "broken.toml"
    broken.write_text("[asr\n")
    with pytest.raises(BadInputError, match="not valid TOML"):
        load_config(broken, environ={})


def test_config_objects_are_frozen_and_keyword_only() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.asr.model = "base"  # type: ignore[misc]
    with pytest.raises(TypeError):
        type(config.asr)("base")


def test_config_command_masks_secrets() -> None:
    env = {"GLASSES_AGENT_CLOUD__TOKEN": "s3cret-token", "PATH": "/usr/bin:/bin"}
    proc = run_agent("config", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    data = json.loads(out)
    assert data["cloud"]["token"] == "***"
    assert "s3cret-token" not in out
    assert data["asr"]["model"] == "tiny.en"


def test_cli_bad_override_exits_2_without_traceback() -> None:
    assert_one_line_error(run_agent("--set", "nope", "config"), "glasses-agent",
                          "section.key=value")
