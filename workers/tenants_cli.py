"""``writeback tenants``: onboarding a tenant — check what its server can do against its
configuration (and since the last check), and manage its identity crosswalk."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from activities.capability_discovery import (
    DiscoveryFailed,
    ProfileStore,
    check_and_store,
    discover,
)
from activities.crosswalk_store import Mapping
from adapters.capability_profile import CapabilityProfile
from adapters.errors import EXIT_FAILED, EXIT_OK
from adapters.internal_refs import CROSSWALK_TYPES, ID_PATTERN
from adapters.tenants import Tenant, load_tenants, resolve_tenants_path
from workers.cli_support import UsageError, connect_client
from workers.discovery_schedule import schedule_discovery
from workers.settings import Settings
from workers.worker import crosswalk_store


def _tenant(args: argparse.Namespace) -> Tenant:
    registry = load_tenants(resolve_tenants_path(args.tenants))
    tenant = registry.get(args.tenant)
    if tenant is None:
        raise UsageError(f"unknown tenant '{args.tenant}' (configured: {', '.join(registry.ids)})")
    return tenant


def profile_text(profile: CapabilityProfile) -> list[str]:
    lines = [f"server     {profile.software or '?'} (FHIR {profile.fhir_version or '?'})"]
    for rtype, res in sorted(profile.resources.items()):
        flags = [f"versioning={res.versioning}"]
        flags += ["conditional-create"] if res.conditional_create else []
        flags += ["conditional-update"] if res.conditional_update else []
        lines.append(f"  {rtype:<22} {' '.join(res.interactions)}  [{' '.join(flags)}]")
    lines.append(f"patch      {', '.join(profile.patch_formats) or 'none'}")
    lines.append(f"token      {profile.token_endpoint or 'none advertised'}")
    lines.append(f"scopes     {len(profile.scopes)} advertised")
    return lines


async def cmd_check(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    store = ProfileStore(Path(args.state_dir or Settings.from_env().state_dir))
    async with httpx.AsyncClient() as http:
        try:
            profile = await discover(tenant, http)
        except DiscoveryFailed as exc:
            raise UsageError(f"tenant '{tenant.id}': discovery failed: {exc}") from None
    report = check_and_store(tenant, profile, store)
    if args.json:
        print(json.dumps({**report.model_dump(), "profile": profile.model_dump()}, indent=2))
    else:
        print(f"tenant     {tenant.id} ({tenant.vendor.value}) {tenant.base_url()}")
        print("\n".join(profile_text(profile)))
        if report.first_check:
            print("changes    first check: profile stored")
        else:
            print(f"changes    {len(report.changes)} since the last check")
            for line in report.changes:
                print(f"  {line}")
        print(f"mismatches {len(report.mismatches)} with the tenant's configuration")
        for line in report.mismatches:
            print(f"  {line}")
    return EXIT_FAILED if report.mismatches else EXIT_OK


async def cmd_schedule(args: argparse.Namespace) -> int:
    """Create (or replace) the tenant's discovery Schedule: a TenantDiscovery run every N hours."""
    tenant = _tenant(args)
    client = await connect_client()
    schedule_id = await schedule_discovery(
        client.temporal, tenant.id, client.task_queue, timedelta(hours=args.every_hours)
    )
    print(f"{schedule_id}: discovery every {args.every_hours:g} h")
    return EXIT_OK


def cmd_map(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    for what in ("internal_id", "tenant_id"):
        if not ID_PATTERN.match(getattr(args, what)):
            raise UsageError(f"{what} must be 1-64 letters, digits, '-' or '.'")
    mapping = Mapping(
        tenant=tenant.id,
        resource_type=args.resource_type,
        internal_id=args.internal_id,
        tenant_id=args.tenant_id,
        source="manual",
        learned_at=datetime.now(UTC),
        lookup=f"writeback tenants map, by {args.by}",
    )
    crosswalk_store().put(mapping)
    print(f"{tenant.id}: {args.resource_type}/internal:{args.internal_id} -> {args.tenant_id}")
    return EXIT_OK


def cmd_crosswalk(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    for m in crosswalk_store().mappings(tenant.id):
        print(
            f"{m.resource_type}/internal:{m.internal_id} -> {m.tenant_id}  "
            f"[{m.source}, {m.learned_at.isoformat(timespec='seconds')}, {m.lookup}]"
        )
    return EXIT_OK


def add_tenants_commands(sub: Any) -> None:
    tenants = sub.add_parser("tenants", help="onboard tenants: capabilities and crosswalk")
    commands = tenants.add_subparsers(dest="tenants_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("tenant")
        p.add_argument("--tenants", help="tenant file (default: $WRITEBACK_TENANTS or the demo)")

    check = commands.add_parser(
        "check",
        help="discover the server's capabilities; print the profile, what changed since the "
        "last check, and every mismatch with the configuration (exit 1 when there is one)",
    )
    common(check)
    check.add_argument("--state-dir", help="where profiles are kept (default ./state)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(run=cmd_check)

    schedule = commands.add_parser(
        "schedule", help="re-run discovery on a Temporal Schedule (Temporal at $TEMPORAL_ADDRESS)"
    )
    common(schedule)
    schedule.add_argument("--every-hours", type=float, default=24.0)
    schedule.set_defaults(run=cmd_schedule)

    mapping = commands.add_parser("map", help="record an identity mapping by hand")
    common(mapping)
    mapping.add_argument("resource_type", choices=sorted(CROSSWALK_TYPES))
    mapping.add_argument("internal_id")
    mapping.add_argument("tenant_id", help="the id of the same record in the tenant's EHR")
    mapping.add_argument("--by", required=True, help="your operator id")
    mapping.set_defaults(run=cmd_map)

    listing = commands.add_parser("crosswalk", help="list the tenant's identity mappings")
    common(listing)
    listing.set_defaults(run=cmd_crosswalk)
