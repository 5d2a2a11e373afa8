"""FHIR R4 transaction and batch Bundles as writeback's commands: pure functions, no framework.

The API's ``POST /fhir/{tenant}`` reads the Bundle's ``type`` (``bundle_kind``), then:

- a **transaction** becomes one saga (``saga_of_transaction``): all entries or none, which is what
  FHIR asks of a transaction and what a saga gives across the EHR boundary (withdrawn, the
  clinical way, when a later entry fails: workflows/clinical_saga.py). ``Bundle.entry[i]`` is the
  step ``e{i}``; a saga creates, so every entry is a ``POST`` of its resource's type;
- a **batch** becomes independent writes (``writes_of_batch``), each with its own key
  (``batch.{key}.e{i}``, adapters/ids.py): a create (``POST Type``) or an update of the version
  the user saw (``PUT Type/id`` with ``ifMatch: W/"version"``, the write's ``base_version``).

References between entries and conditional references follow FHIR's rules as
workers/api/bundle_references.py describes. Anything writeback cannot take as FHIR says it
should is a ``BundleProblem`` naming the element (``Bundle.entry[2].request.method``) and an R4
issue code, never a value; nothing is started for a Bundle with one. What writeback checks of
every write (validation, the tenant's profile and policy, the crosswalk) is left to the writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from adapters.ids import batch_entry_key
from adapters.problems import validation_problems
from adapters.reasons import known_type_name
from adapters.tenants import CrosswalkSettings, Interaction
from workers.api.bundle_problem import BundleProblem
from workers.api.bundle_references import FULL_URL, BundleKind, BundleReferences, step_name
from workflows.contract import Urgency, WriteCommand
from workflows.input_limits import CommandRefused, LimitExceeded, check_command
from workflows.saga_contract import MAX_STEPS, SAGA_KEY_PATTERN, SagaCommand, SagaStep

#: The saga kind of a transaction Bundle (sagas take any token as their kind; nothing in the
#: workflow depends on it: it names the saga in search attributes and metrics).
TRANSACTION_KIND = "transaction"
#: The most entries of a batch: each is a write of its own, started by one request.
MAX_BATCH_ENTRIES = 100
#: A Bundle's idempotency key: a saga's (a transaction's steps add ``saga.`` and ``.e{i}`` to
#: it), and a batch's too (``batch.`` and ``.e{i}``): either way a write key, at most 128.
_BUNDLE_KEY = re.compile(SAGA_KEY_PATTERN)
#: FHIR's conditional create and read headers: writeback makes every create idempotent itself
#: (its command identifier), and an update names the version the user saw by ``ifMatch``.
_CONDITIONS = ("ifNoneExist", "ifNoneMatch", "ifModifiedSince")
_WEAK_ETAG = re.compile(r'W/"(?P<version>[A-Za-z0-9.\-]{1,64})"')
_UPDATE_URL = re.compile(r"(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})")
M = TypeVar("M", bound=BaseModel)
#: A saga's step in a path of the input limits: ``?[2].resource.code`` (they show the fields of
#: a write command by name, others as ``?``; a saga's only list is its steps).
_STEP_PATH = re.compile(r"^(?:steps|\?)\[(?P<index>\d+)\]")


@dataclass(frozen=True)
class Entry:
    """One entry, checked: its resource, and for an update the target and the version seen."""

    index: int
    resource: dict[str, Any]
    full_url: str | None
    target: str | None = None
    base_version: str | None = None


def bundle_kind(bundle: object) -> BundleKind:
    """Whether ``bundle`` is a transaction or a batch; a BundleProblem if it is neither."""
    if not isinstance(bundle, dict):
        raise BundleProblem("Bundle", "structure", "must be a JSON object: a FHIR Bundle")
    if bundle.get("resourceType") != "Bundle":
        raise BundleProblem("Bundle.resourceType", "value", "must be Bundle")
    kind = bundle.get("type")
    if kind == "transaction":
        return "transaction"
    if kind == "batch":
        return "batch"
    raise BundleProblem(
        "Bundle.type",
        "required" if kind is None else "not-supported",
        "must be transaction or batch: writeback writes no other kind of Bundle",
    )


def saga_of_transaction(
    tenant: str,
    bundle: object,
    idempotency_key: str,
    *,
    requested_by: str,
    crosswalk: CrosswalkSettings,
    on_behalf_of: str | None = None,
    urgency: Urgency = Urgency.ROUTINE,
) -> SagaCommand:
    """The saga that writes a transaction Bundle's entries, in order; ``crosswalk`` is the
    tenant's (conditional references become internal ones: workers/api/bundle_references.py)."""
    entries = _entries(bundle, "transaction", idempotency_key, MAX_STEPS)
    references = _references(entries, "transaction", crosswalk)
    steps = [
        SagaStep(
            name=step_name(entry.index), resource=references.translated(entry.index, entry.resource)
        )
        for entry in entries
    ]
    saga = _built(
        SagaCommand,
        tenant=tenant,
        idempotency_key=idempotency_key,
        kind=TRANSACTION_KIND,
        steps=steps,
        requested_by=requested_by,
        on_behalf_of=on_behalf_of,
        urgency=urgency,
    )
    _within_limits(saga, None)
    return saga


def writes_of_batch(
    tenant: str,
    bundle: object,
    idempotency_key: str,
    *,
    requested_by: str,
    crosswalk: CrosswalkSettings,
    on_behalf_of: str | None = None,
    role: str | None = None,
    purpose: str | None = None,
    urgency: Urgency = Urgency.ROUTINE,
) -> list[WriteCommand]:
    """One write per entry of a batch Bundle, in order, each keyed by the Bundle's key and the
    entry's index: the same Bundle sent again is the same writes."""
    entries = _entries(bundle, "batch", idempotency_key, MAX_BATCH_ENTRIES)
    references = _references(entries, "batch", crosswalk)
    writes = []
    for entry in entries:
        write = _built(
            WriteCommand,
            tenant=tenant,
            idempotency_key=batch_entry_key(idempotency_key, entry.index),
            interaction=Interaction.UPDATE if entry.target else Interaction.CREATE,
            resource=references.translated(entry.index, entry.resource),
            target=entry.target,
            base_version=entry.base_version,
            requested_by=requested_by,
            on_behalf_of=on_behalf_of,
            role=role,
            purpose=purpose,
            urgency=urgency,
        )
        _within_limits(write, entry.index)
        writes.append(write)
    return writes


# --- the Bundle, entry by entry ----------------------------------------------------------------


def _entries(bundle: object, kind: BundleKind, key: str, most: int) -> list[Entry]:
    if bundle_kind(bundle) != kind:
        raise BundleProblem("Bundle.type", "value", f"must be {kind} here")
    assert isinstance(bundle, dict)
    if _BUNDLE_KEY.fullmatch(key) is None:
        raise BundleProblem(
            "idempotency_key",
            "value",
            "must be 1 to 86 of A-Z a-z 0-9 . _ - (starting with a letter or digit)",
        )
    raw = bundle.get("entry")
    if not isinstance(raw, list) or not raw:
        raise BundleProblem("Bundle.entry", "required", f"a {kind} needs at least one entry")
    if len(raw) > most:
        raise BundleProblem(
            "Bundle.entry", "too-costly", f"a {kind} has at most {most} entries: split it"
        )
    return [_entry(index, item, kind) for index, item in enumerate(raw)]


def _entry(index: int, raw: object, kind: BundleKind) -> Entry:
    path = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise BundleProblem(path, "structure", "must be an object")
    request = raw.get("request")
    if not isinstance(request, dict):
        raise BundleProblem(f"{path}.request", "required", "needs a request: method and url")
    method = _method(path, request.get("method"), kind)
    for condition in (*_CONDITIONS, *(("ifMatch",) if method == "POST" else ())):
        if condition in request:
            raise BundleProblem(
                f"{path}.request.{condition}",
                "not-supported",
                "writeback makes every create idempotent itself (its command identifier) and "
                "updates only the version the user saw (ifMatch, on a PUT): leave it out",
            )
    resource = raw.get("resource")
    if not isinstance(resource, dict) or not resource:
        raise BundleProblem(f"{path}.resource", "required", "needs the resource to write")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise BundleProblem(f"{path}.resource.resourceType", "required", "needs a resourceType")
    if not known_type_name(resource_type):
        raise BundleProblem(
            f"{path}.resource.resourceType", "value", "is not a FHIR R4 resource type"
        )
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise BundleProblem(f"{path}.request.url", "required", "needs the url of the request")
    full_url = _full_url(path, raw.get("fullUrl"), required_form=method == "POST")
    if method == "POST":
        _create_url(path, url, resource_type)
        return Entry(index, resource, full_url)
    target, version = _update_of(path, url, resource, request.get("ifMatch"))
    return Entry(index, resource, full_url, target, version)


def _method(path: str, method: object, kind: BundleKind) -> str:
    if not isinstance(method, str) or not method:
        raise BundleProblem(f"{path}.request.method", "required", "needs a method")
    if method == "POST" or (kind == "batch" and method == "PUT"):
        return method
    raise BundleProblem(
        f"{path}.request.method",
        "not-supported",
        "a transaction is written as a saga, which creates: only POST; send updates (PUT, with "
        "ifMatch) in a batch"
        if kind == "transaction"
        else "a batch entry is a create (POST) or an update (PUT, with ifMatch)",
    )


def _full_url(path: str, full_url: object, required_form: bool) -> str | None:
    """A create's fullUrl, when it has one, is ``urn:uuid:…``; an update's may be its URL,
    which nothing refers to here."""
    if full_url is None:
        return None
    if isinstance(full_url, str) and FULL_URL.fullmatch(full_url):
        return full_url
    if required_form:
        raise BundleProblem(
            f"{path}.fullUrl",
            "not-supported",
            "the fullUrl of a created entry must be urn:uuid:<uuid> (or left out)",
        )
    return None


def _create_url(path: str, url: str, resource_type: str) -> None:
    if "?" in url:
        raise BundleProblem(
            f"{path}.request.url",
            "not-supported",
            "conditional create is not supported: writeback makes every create idempotent "
            "itself; the url of a create is the resource's type",
        )
    if url != resource_type:
        raise BundleProblem(
            f"{path}.request.url",
            "invalid",
            f"must be the type of {path}.resource (a create is POST <resourceType>)",
        )


def _update_of(path: str, url: str, resource: dict[str, Any], if_match: object) -> tuple[str, str]:
    """``(Type/id, version seen)`` of a batch's PUT."""
    match = _UPDATE_URL.fullmatch(url)
    if match is None or match["type"] != resource["resourceType"] or not match["id"].strip("."):
        raise BundleProblem(
            f"{path}.request.url",
            "invalid",
            f"must be <resourceType>/<id> of the resource it updates, the type of {path}.resource",
        )
    if resource.get("id", match["id"]) != match["id"]:
        raise BundleProblem(f"{path}.resource.id", "invalid", "differs from the id in request.url")
    etag = _WEAK_ETAG.fullmatch(if_match) if isinstance(if_match, str) else None
    if etag is None:
        raise BundleProblem(
            f"{path}.request.ifMatch",
            "required",
            'an update needs the version the user saw: W/"<version>"',
        )
    return url, etag["version"]


def _references(
    entries: list[Entry], kind: BundleKind, crosswalk: CrosswalkSettings
) -> BundleReferences:
    full_urls: dict[str, int] = {}
    for entry in entries:
        if entry.full_url is None:
            continue
        if entry.full_url in full_urls:
            raise BundleProblem(
                f"Bundle.entry[{entry.index}].fullUrl",
                "duplicate",
                f"Bundle.entry[{full_urls[entry.full_url]}] has the same fullUrl",
            )
        full_urls[entry.full_url] = entry.index
    return BundleReferences(kind, full_urls, crosswalk)


# --- the commands --------------------------------------------------------------------------------


def _built(model: type[M], **fields: Any) -> M:
    """The command, or a BundleProblem naming the argument that is not right (the tenant, the
    caller, the on-behalf-of user: the entries were checked before)."""
    try:
        return model(**fields)
    except ValidationError as err:
        problem = validation_problems(err, model.__name__, frozenset(fields))[0]
        raise BundleProblem(problem.path, "value", problem.message) from None


def _within_limits(command: SagaCommand | WriteCommand, index: int | None) -> None:
    """The input limits the client applies before it starts anything (workflows/input_limits.py),
    reported at the entry they concern: batch entry ``index``, or the saga's step."""
    try:
        check_command(command)
    except CommandRefused as refused:
        raise BundleProblem(
            _bundle_path(refused.path, index),
            "too-costly" if isinstance(refused, LimitExceeded) else "structure",
            refused.code,
        ) from None


def _bundle_path(path: str, index: int | None) -> str:
    """A command's path as the Bundle's: ``steps[2].resource.code`` (a saga's) or, of batch
    entry 2, ``resource.code`` → ``Bundle.entry[2].resource.code``; ``command`` → ``Bundle``."""
    if index is not None and path.startswith("resource"):
        return f"Bundle.entry[{index}].{path}"
    if match := _STEP_PATH.match(path):
        return f"Bundle.entry[{match['index']}]" + path[match.end() :]
    return "Bundle"
