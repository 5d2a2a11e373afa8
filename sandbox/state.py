"""Everything one sandbox process holds: the store and the per-tenant registries."""

from __future__ import annotations

from collections import Counter, defaultdict

from sandbox.auth import AuthService
from sandbox.config import SandboxConfig
from sandbox.context import StaleReads
from sandbox.fault_registry import FaultRegistry
from sandbox.request_log import RequestLog
from sandbox.stats import Stats
from sandbox.store import Store
from sandbox.tenants import TenantRegistry


class Sandbox:
    def __init__(self, db_path: str, config: SandboxConfig) -> None:
        self.store = Store(db_path)
        self.tenants = TenantRegistry(config.tenants)
        self.faults = FaultRegistry(config.faults)
        self.auth = AuthService(config.auth)
        self.stats = Stats()
        self.requests = RequestLog()
        self.stale = StaleReads()
        self.in_flight: Counter[str] = Counter()
        self.unity_tokens: defaultdict[str, set[str]] = defaultdict(set)
        """Veradigm Unity tokens handed out by GetToken, per tenant (sandbox.proprietary)."""

    def reset(self, tenant: str | None = None) -> None:
        """Data, faults, tokens, stats and settings back to the configured start state."""
        self.store.reset(tenant)
        self.tenants.reset(tenant)
        self.faults.reset(tenant)
        self.auth.reset(tenant)
        self.stats.reset(tenant)
        self.requests.reset(tenant)
        self.stale.clear(tenant)
        for name in [tenant] if tenant else list(self.unity_tokens):
            self.unity_tokens.pop(name, None)
