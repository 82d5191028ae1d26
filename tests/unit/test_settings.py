"""Settings: PARLEY_* variables, defaults for local infra, one clear line when one is missing."""

from __future__ import annotations

import pytest
from parley_ingest.settings import IngestSettings
from parley_shared.settings import ENV_PREFIX, ServiceSettings, load_settings
from pydantic import SecretStr

pytestmark = pytest.mark.unit


class NeedsToken(ServiceSettings):
    api_token: SecretStr


class NeedsTwo(ServiceSettings):
    api_token: SecretStr
    webhook_secret: SecretStr


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PARLEY_* variable of the caller's shell leaks into these tests."""
    for cls in (ServiceSettings, NeedsToken, NeedsTwo, IngestSettings):
        for field in cls.model_fields:
            monkeypatch.delenv(ENV_PREFIX + field.upper(), raising=False)
            monkeypatch.delenv((ENV_PREFIX + field).lower(), raising=False)


def test_defaults_match_the_local_infrastructure() -> None:
    settings = ServiceSettings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.mongodb_url == "mongodb://127.0.0.1:27017/parley"
    assert settings.topic_namespace == ""


def test_variables_are_read_with_the_parley_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_KAFKA_BOOTSTRAP_SERVERS", "broker:29092")
    monkeypatch.setenv("PARLEY_TOPIC_NAMESPACE", "staging")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "unprefixed:1")

    settings = ServiceSettings()

    assert settings.kafka_bootstrap_servers == "broker:29092"
    assert settings.topic_namespace == "staging"


def test_the_store_is_the_mongodb_url_until_a_store_url_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_MONGODB_URL", "mongodb://mongo:27017/parley")
    assert ServiceSettings().store == "mongodb://mongo:27017/parley"

    monkeypatch.setenv("PARLEY_STORE_URL", "postgresql://parley@db:5432/parley")
    assert ServiceSettings().store == "postgresql://parley@db:5432/parley"


def test_group_ids_are_prefixed_with_the_default_prefix() -> None:
    assert ServiceSettings().group_id("routing") == "parley.routing"


def test_group_ids_use_the_configured_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_CONSUMER_GROUP_PREFIX", "test42")
    assert ServiceSettings().group_id("normalizer") == "test42.normalizer"


def test_a_missing_secret_stops_the_process_with_one_line_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_settings(NeedsToken)

    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert "PARLEY_API_TOKEN" in lines[0]
    assert captured.out == ""


def test_every_missing_variable_is_named_on_the_same_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_settings(NeedsTwo)

    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "PARLEY_API_TOKEN" in lines[0]
    assert "PARLEY_WEBHOOK_SECRET" in lines[0]


def test_an_invalid_value_is_named_and_not_echoed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PARLEY_API_TOKEN", "tok-value")
    monkeypatch.setenv("PARLEY_HTTP_PORT", "not-a-port")

    with pytest.raises(SystemExit) as exit_info:
        load_settings(NeedsToken)

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "PARLEY_HTTP_PORT" in err
    assert "tok-value" not in err


def test_settings_load_when_the_secret_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_API_TOKEN", "tok-value")

    settings = load_settings(NeedsToken)

    assert settings.api_token.get_secret_value() == "tok-value"
    assert "tok-value" not in repr(settings)


# --- ingest ------------------------------------------------------------------------------


def test_meta_secrets_are_split_on_commas_and_blanks_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_META_APP_SECRETS", " old-secret , new-secret,, ,")
    monkeypatch.setenv("PARLEY_META_VERIFY_TOKEN", "verify")

    settings = load_settings(IngestSettings)

    assert settings.meta_secrets() == ["old-secret", "new-secret"]


def test_a_single_meta_secret_is_a_list_of_one() -> None:
    settings = IngestSettings(meta_app_secrets=SecretStr("only"), meta_verify_token=SecretStr("v"))
    assert settings.meta_secrets() == ["only"]


def test_ingest_refuses_to_start_without_its_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_settings(IngestSettings)

    err = capsys.readouterr().err
    assert "PARLEY_META_APP_SECRETS" in err
    assert "PARLEY_META_VERIFY_TOKEN" in err


@pytest.mark.parametrize("value", ["dev-x-webhook", "", "12345678901234567890", "12 34", "-1"])
def test_the_x_activity_webhook_id_must_be_one_to_nineteen_digits(value: str) -> None:
    from parley_onboarding.settings import OnboardingSettings
    from pydantic import ValidationError

    base = {
        "encryption_keys": "k1:" + "A" * 43 + "=",
        "meta_app_id": "app",
        "meta_app_secret": "secret",
        "jwt_hs256_secret": "jwt-secret-for-unit-tests-only-32b",
    }
    with pytest.raises(ValidationError, match="x_activity_webhook_id"):
        OnboardingSettings(**base, x_activity_webhook_id=value)
    accepted = OnboardingSettings(**base, x_activity_webhook_id="1" * 19, x_bearer_token="app-bearer-value")
    assert accepted.x_activity_webhook_id == "1" * 19
    assert "app-bearer-value" not in repr(accepted)


def test_several_bootstrap_servers_reach_the_broker_client_as_several_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from parley_shared.kafka import make_broker

    monkeypatch.setenv("PARLEY_KAFKA_BOOTSTRAP_SERVERS", "kafka-0:9092, kafka-1:9092,kafka-2:9092")
    broker = make_broker(ServiceSettings(), "parley-test")
    # FastStream takes one string as one address: a comma-separated list must arrive split
    assert broker._connection_kwargs["bootstrap_servers"] == ["kafka-0:9092", "kafka-1:9092", "kafka-2:9092"]
