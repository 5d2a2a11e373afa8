"""The sandbox config file (``--config FILE``, TOML).

```toml
[tenants.acme-epic]
personality = "epic"                        # r4 | epic | cerner | athena | veradigm
allowed_identifier_systems = ["urn:oid:1.2.3"]   # optional: drop other identifiers
max_in_flight = 30                          # optional: 429 above N concurrent requests
paging = "hapi"                             # optional: offset (default) | hapi next links

[tenants.acme-epic.auth]                    # SMART Backend Services (off unless present)
enabled = true
token_ttl_seconds = 300
[[tenants.acme-epic.auth.clients]]
client_id = "writeback"
scopes = ["system/Observation.c", "system/Observation.rs"]
jwks_file = "keys/writeback.jwks.json"      # or jwks = { keys = [...] }
# public_key_pem = "keys/writeback.pub.pem" # or a PEM path (+ kid = "...")

[tenants.acme-epic.faults]                  # same shape as POST /_admin/faults/{tenant}
latency_ms = 20
index_delay_seconds = 2
random = { seed = 7, rate = 0.1, kinds = [{ kind = "status", status = 503 }] }
```

Relative key paths are resolved against the config file's directory. CLI
``--personality`` flags are applied on top of the file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.auth import AuthConfig, parse_auth
from sandbox.faults import parse_config
from sandbox.tenants import TenantSettings, parse_settings


@dataclass
class SandboxConfig:
    tenants: dict[str, TenantSettings] = field(default_factory=dict)
    auth: dict[str, AuthConfig] = field(default_factory=dict)
    faults: dict[str, Any] = field(default_factory=dict)
    """Raw fault configurations (re-parsed on reset so outage windows restart)."""


def load_config(path: Path, base: dict[str, TenantSettings] | None = None) -> SandboxConfig:
    """Parse the file; raises ValueError naming the file, tenant and field at fault."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    unknown = set(data) - {"tenants"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)}")
    tenants = data.get("tenants", {})
    if not isinstance(tenants, dict):
        raise ValueError(f"{path}: [tenants] must be a table")
    cfg = SandboxConfig(tenants=dict(base or {}))
    for tenant, raw in tenants.items():
        where = f"{path}: tenants.{tenant}"
        if not isinstance(raw, dict):
            raise ValueError(f"{where} must be a table")
        settings_raw = {k: v for k, v in raw.items() if k not in ("auth", "faults")}
        try:
            cfg.tenants[tenant] = parse_settings(
                settings_raw, cfg.tenants.get(tenant, TenantSettings())
            )
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if "auth" in raw:
            try:
                cfg.auth[tenant] = parse_auth(raw["auth"], path.parent)
            except (ValueError, OSError) as exc:
                raise ValueError(f"{where}.auth: {exc}") from None
        if "faults" in raw:
            try:
                parse_config(raw["faults"])
            except ValueError as exc:
                raise ValueError(f"{where}.faults: {exc}") from None
            cfg.faults[tenant] = raw["faults"]
    return cfg
