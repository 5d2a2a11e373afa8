"""Ports from the environment: unset means off, anything but a port number is a clear error."""

from __future__ import annotations

import pytest

from workers.settings import Settings, SettingsError
from workers.versioning import deployment_config


def test_probe_and_metrics_ports_are_off_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WRITEBACK_HEALTH_PORT", raising=False)
    monkeypatch.setenv("WRITEBACK_METRICS_PORT", "9464")
    settings = Settings.from_env()
    assert (settings.health_port, settings.metrics_port) == (None, 9464)


@pytest.mark.parametrize("value", ["http", "-1", "70000", "80.5"])
def test_a_bad_port_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("WRITEBACK_HEALTH_PORT", value)
    with pytest.raises(SettingsError, match="WRITEBACK_HEALTH_PORT must be a TCP port"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("deployment", "build_id", "message"),
    [("writeback", "", "set both"), ("", "v2", "set both"), ("write.back", "v2", "'.'")],
)
def test_versioning_needs_a_deployment_and_a_build_id(
    monkeypatch: pytest.MonkeyPatch, deployment: str, build_id: str, message: str
) -> None:
    monkeypatch.setenv("WRITEBACK_DEPLOYMENT", deployment)
    monkeypatch.setenv("WRITEBACK_BUILD_ID", build_id)
    with pytest.raises(SettingsError, match=message):
        deployment_config(Settings.from_env())


def test_without_versioning_variables_workers_are_unversioned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WRITEBACK_DEPLOYMENT", raising=False)
    monkeypatch.delenv("WRITEBACK_BUILD_ID", raising=False)
    assert deployment_config(Settings.from_env()) is None
