"""Ports from the environment: unset means off, anything but a port number is a clear error."""

from __future__ import annotations

import pytest

from workers.settings import Settings, SettingsError


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
