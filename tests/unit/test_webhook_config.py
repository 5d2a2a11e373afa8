"""The webhooks file (adapters/webhooks.py): what it accepts, and refusals that name the field at
fault and never the secret."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from adapters.webhooks import WebhookConfigError, configured_webhooks, load_webhooks

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "webhooks.toml"
    path.write_text(body)
    return path


def endpoint(**fields: str) -> str:
    values = {
        "id": '"crm"',
        "url": '"https://hooks.example.org/wb"',
        "secret": f'"{SECRET}"',
        "tenants": '["acme"]',
        **fields,
    }
    return "[[endpoint]]\n" + "".join(f"{k} = {v}\n" for k, v in values.items() if v)


def refusal(tmp_path: Path, body: str) -> str:
    with pytest.raises(WebhookConfigError) as caught:
        load_webhooks(config(tmp_path, body))
    return str(caught.value)


def test_an_endpoint_takes_its_secret_from_the_environment_and_filters_tenants_and_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_SECRET", SECRET)
    body = endpoint(secret="", secret_env='"CRM_SECRET"', events='["verified", "waiting"]')
    subscriptions = load_webhooks(config(tmp_path, body))

    [crm] = subscriptions.subscribers("acme", "verified")
    assert crm.signing_secret == SECRET
    assert subscriptions.subscribers("acme", "waiting") == [crm]
    assert subscriptions.subscribers("acme", "rejected") == []
    assert subscriptions.subscribers("other-tenant", "verified") == []


def test_a_star_subscribes_to_every_tenant_and_no_events_list_to_every_event(
    tmp_path: Path,
) -> None:
    subscriptions = load_webhooks(config(tmp_path, endpoint(tenants='["*"]')))
    assert len(subscriptions.subscribers("anyone", "compensated")) == 1


def test_no_file_configured_means_no_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WRITEBACK_WEBHOOKS", raising=False)
    assert len(configured_webhooks()) == 0


def test_plain_http_is_refused_unless_the_endpoint_allows_it(tmp_path: Path) -> None:
    message = refusal(tmp_path, endpoint(url='"http://hooks.example.org/wb"'))
    assert "endpoint #1" in message and "url is not https://" in message
    allowed = endpoint(url='"http://127.0.0.1:9/wb"', allow_insecure_http="true")
    assert load_webhooks(config(tmp_path, allowed)).get("crm") is not None


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        ('"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"', "does not start with 'whsec_'"),
        ('"whsec_not*base64!!"', "not base64"),
        ('"whsec_c2hvcnQ="', "24-64 bytes"),
    ],
)
def test_a_bad_secret_is_refused_without_quoting_it(tmp_path: Path, secret: str, says: str) -> None:
    message = refusal(tmp_path, endpoint(secret=secret))
    assert says in message
    assert secret.strip('"').removeprefix("whsec_") not in message


def test_a_secret_variable_that_is_not_set_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    message = refusal(tmp_path, endpoint(secret="", secret_env='"NOT_SET_ANYWHERE"'))
    assert "environment variable NOT_SET_ANYWHERE is not set" in message


def test_an_endpoint_without_a_secret_is_refused(tmp_path: Path) -> None:
    assert "give secret_env (or secret)" in refusal(tmp_path, endpoint(secret=""))


def test_an_unknown_event_or_field_is_named(tmp_path: Path) -> None:
    assert "events.0" in refusal(tmp_path, endpoint(events='["delivered"]'))
    assert "secrett" in refusal(tmp_path, endpoint(secrett='"x"'))
    assert "tenants" in refusal(tmp_path, endpoint(tenants="[]"))


def test_a_secret_never_appears_in_any_refusal(tmp_path: Path) -> None:
    """Whatever else is wrong with the endpoint, its (valid) secret is not in the message."""
    message = refusal(tmp_path, endpoint(url='"ftp://x"', retry="{ attempts = 0 }"))
    assert "url" in message and "retry.attempts" in message
    assert SECRET not in message and SECRET.removeprefix("whsec_") not in message


def test_duplicate_ids_and_malformed_files_are_refused(tmp_path: Path) -> None:
    assert "duplicate endpoint ids" in refusal(tmp_path, endpoint() + endpoint())
    assert "not valid TOML" in refusal(tmp_path, "[[endpoint]\nid = ")
    assert "only [[endpoint]] tables" in refusal(tmp_path, "[tenant]\nid = 'x'\n")
    with pytest.raises(WebhookConfigError, match="not found"):
        load_webhooks(tmp_path / "missing.toml")
