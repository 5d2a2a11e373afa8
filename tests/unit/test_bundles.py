"""FHIR transaction and batch Bundles as writeback's commands, and the Bundles that answer them
(workers/api/bundles.py, bundle_references.py, bundle_responses.py): pure functions, real
models, no mocks. Every refusal names an element path and an R4 issue code, never a value."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from adapters.tenants import CrosswalkSettings, Interaction
from workers.api.bundle_problem import BundleProblem
from workers.api.bundle_responses import batch_response, transaction_response
from workers.api.bundles import MAX_BATCH_ENTRIES, saga_of_transaction, writes_of_batch
from workflows.contract import WriteState, WriteStatus
from workflows.saga_contract import MAX_STEPS, SagaStatus, SagaStepStatus

CROSSWALK = CrosswalkSettings()
INTERNAL = CROSSWALK.identifier_system
#: A value that stands for patient data: no refusal may show it.
CANARY = "JaneDoeMRN4711"
REQUEST_URL = "urn:uuid:11111111-1111-4111-8111-111111111111"
TASK_URL = "urn:uuid:22222222-2222-4222-8222-222222222222"


def post(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def referral() -> dict[str, Any]:
    """ServiceRequest, Task about it, Communication about both: later entries refer to earlier
    ones by their urn:uuid fullUrl."""
    return bundle(
        "transaction",
        post(
            {
                "resourceType": "ServiceRequest",
                "status": "active",
                "intent": "order",
                "subject": {"reference": f"Patient?identifier={INTERNAL}|{CANARY}"},
            },
            REQUEST_URL,
        ),
        post(
            {
                "resourceType": "Task",
                "status": "requested",
                "intent": "order",
                "focus": {"reference": REQUEST_URL},
                "for": {"reference": "Patient/p-1"},
            },
            TASK_URL,
        ),
        post(
            {
                "resourceType": "Communication",
                "status": "completed",
                "about": [{"reference": REQUEST_URL}, {"reference": TASK_URL}],
                "contained": [{"resourceType": "Basic", "subject": {"reference": TASK_URL}}],
                "recipient": [{"reference": "Organization/internal:org-7"}],
                "payload": [{"contentReference": {"reference": "#x"}}],
            }
        ),
    )


def transaction(raw: object, key: str = "tx-1") -> Any:
    return saga_of_transaction("demo-r4", raw, key, requested_by="svc", crosswalk=CROSSWALK)


def batch(raw: object, key: str = "bt-1") -> Any:
    return writes_of_batch("demo-r4", raw, key, requested_by="svc", crosswalk=CROSSWALK)


def refusal(translate: Any, raw: object, key: str | None = None) -> BundleProblem:
    with pytest.raises(BundleProblem) as caught:
        translate(raw) if key is None else translate(raw, key)
    assert CANARY not in str(caught.value)
    assert caught.value.issue()["expression"] == [caught.value.expression]
    return caught.value


# --- transactions --------------------------------------------------------------------------------


def test_a_transaction_becomes_a_saga_of_its_entries_in_order() -> None:
    saga = transaction(referral())
    assert saga.kind == "transaction"
    assert (saga.tenant, saga.idempotency_key, saga.requested_by) == ("demo-r4", "tx-1", "svc")
    assert [step.name for step in saga.steps] == ["e0", "e1", "e2"]
    assert [step.resource_type for step in saga.steps] == [
        "ServiceRequest",
        "Task",
        "Communication",
    ]
    assert not any(step.optional for step in saga.steps)


def test_urn_uuid_references_to_earlier_entries_become_the_saga_steps_references() -> None:
    saga = transaction(referral())
    _, task, notify = saga.steps
    assert task.resource["focus"] == {"reference": "saga:e0"}
    assert notify.resource["about"] == [{"reference": "saga:e0"}, {"reference": "saga:e1"}]
    assert notify.resource["contained"][0]["subject"] == {"reference": "saga:e1"}
    assert (task.depends_on, notify.depends_on) == ({"e0"}, {"e0", "e1"})


def test_other_references_pass_through_unchanged() -> None:
    saga = transaction(referral())
    _, task, notify = saga.steps
    assert task.resource["for"] == {"reference": "Patient/p-1"}
    assert notify.resource["recipient"] == [{"reference": "Organization/internal:org-7"}]
    assert notify.resource["payload"] == [{"contentReference": {"reference": "#x"}}]


@pytest.mark.parametrize(
    "reference",
    [
        f"Patient?identifier={INTERNAL}|{CANARY}",
        f"Patient?identifier={INTERNAL.replace(':', '%3A')}%7C{CANARY}",
    ],
)
def test_a_conditional_reference_by_the_crosswalk_identifier_becomes_an_internal_one(
    reference: str,
) -> None:
    raw = referral()
    raw["entry"][0]["resource"]["subject"] = {"reference": reference}
    assert transaction(raw).steps[0].resource["subject"] == {
        "reference": f"Patient/internal:{CANARY}"
    }


def test_a_conditional_reference_follows_the_tenants_crosswalk_system() -> None:
    theirs = CrosswalkSettings(identifier_system="urn:example:mrn", types=["Patient"])
    raw = referral()
    with pytest.raises(BundleProblem):
        saga_of_transaction("demo-r4", raw, "k", requested_by="svc", crosswalk=theirs)
    raw["entry"][0]["resource"]["subject"] = {
        "reference": f"Patient?identifier=urn:example:mrn|{CANARY}"
    }
    saga = saga_of_transaction("demo-r4", raw, "k", requested_by="svc", crosswalk=theirs)
    assert saga.steps[0].resource["subject"] == {"reference": f"Patient/internal:{CANARY}"}


def test_the_bundle_is_not_changed() -> None:
    raw = referral()
    before = copy.deepcopy(raw)
    transaction(raw)
    assert raw == before


# --- transactions refused ------------------------------------------------------------------------


def entry_with(index: int, change: dict[str, Any], where: str = "entry") -> dict[str, Any]:
    raw = referral()
    target = raw["entry"][index]
    (target if where == "entry" else target[where]).update(change)
    return raw


@pytest.mark.parametrize(
    ("raw", "expression", "code"),
    [
        ([], "Bundle", "structure"),
        ({"resourceType": "Patient", "type": "transaction"}, "Bundle.resourceType", "value"),
        ({"resourceType": "Bundle"}, "Bundle.type", "required"),
        ({"resourceType": "Bundle", "type": "document"}, "Bundle.type", "not-supported"),
        (bundle("batch", post({"resourceType": "Task"})), "Bundle.type", "value"),
        ({"resourceType": "Bundle", "type": "transaction"}, "Bundle.entry", "required"),
        (bundle("transaction"), "Bundle.entry", "required"),
        ({**bundle("transaction"), "entry": ["entry"]}, "Bundle.entry[0]", "structure"),
        (
            bundle("transaction", {"resource": {"resourceType": "Task"}}),
            "Bundle.entry[0].request",
            "required",
        ),
    ],
)
def test_what_is_not_a_transaction_bundle_is_refused(
    raw: object, expression: str, code: str
) -> None:
    problem = refusal(transaction, raw)
    assert (problem.expression, problem.code) == (expression, code)


def test_a_transaction_over_the_sagas_step_limit_is_refused() -> None:
    steps = [post({"resourceType": "Task", "status": "requested"}) for _ in range(MAX_STEPS + 1)]
    problem = refusal(transaction, bundle("transaction", *steps))
    assert (problem.expression, problem.code) == ("Bundle.entry", "too-costly")
    assert str(MAX_STEPS) in str(problem)
    assert len(transaction(bundle("transaction", *steps[:MAX_STEPS])).steps) == MAX_STEPS


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "GET", "HEAD"])
def test_a_transaction_entry_that_is_not_a_create_is_not_supported(method: str) -> None:
    problem = refusal(transaction, entry_with(2, {"method": method}, "request"))
    assert (problem.expression, problem.code) == ("Bundle.entry[2].request.method", "not-supported")
    assert "batch" in str(problem)  # says where updates go


@pytest.mark.parametrize(
    ("index", "change", "where", "expression", "code"),
    [
        (1, {"method": None}, "request", "Bundle.entry[1].request.method", "required"),
        (1, {"url": None}, "request", "Bundle.entry[1].request.url", "required"),
        (1, {"url": "Communication"}, "request", "Bundle.entry[1].request.url", "invalid"),
        (
            1,
            {"url": f"Task?identifier={CANARY}"},
            "request",
            "Bundle.entry[1].request.url",
            "not-supported",
        ),
        (
            1,
            {"ifNoneExist": f"identifier={CANARY}"},
            "request",
            "Bundle.entry[1].request.ifNoneExist",
            "not-supported",
        ),
        (1, {"ifMatch": 'W/"1"'}, "request", "Bundle.entry[1].request.ifMatch", "not-supported"),
        (1, {"resource": None}, "entry", "Bundle.entry[1].resource", "required"),
        (1, {"resource": {}}, "entry", "Bundle.entry[1].resource", "required"),
        (
            1,
            {"resourceType": None},
            "resource",
            "Bundle.entry[1].resource.resourceType",
            "required",
        ),
        (1, {"resourceType": CANARY}, "resource", "Bundle.entry[1].resource.resourceType", "value"),
        (
            1,
            {"fullUrl": f"http://ehr/{CANARY}"},
            "entry",
            "Bundle.entry[1].fullUrl",
            "not-supported",
        ),
        (1, {"fullUrl": REQUEST_URL}, "entry", "Bundle.entry[1].fullUrl", "duplicate"),
    ],
)
def test_a_bad_transaction_entry_is_refused_at_its_element(
    index: int, change: dict[str, Any], where: str, expression: str, code: str
) -> None:
    problem = refusal(transaction, entry_with(index, change, where))
    assert (problem.expression, problem.code) == (expression, code)


@pytest.mark.parametrize(
    ("index", "field", "reference", "expression", "code"),
    [
        (0, "subject", TASK_URL, "Bundle.entry[0].resource.subject.reference", "invalid"),
        (0, "subject", REQUEST_URL, "Bundle.entry[0].resource.subject.reference", "invalid"),
        (
            1,
            "for",
            "urn:uuid:99999999-9999-4999-8999-999999999999",
            "Bundle.entry[1].resource.for.reference",
            "not-found",
        ),
        (1, "focus", "saga:e0", "Bundle.entry[1].resource.focus.reference", "invalid"),
        (
            1,
            "for",
            f"Patient?identifier=urn:example:mrn|{CANARY}",
            "Bundle.entry[1].resource.for.reference",
            "not-supported",
        ),
        (
            1,
            "for",
            f"Patient?name={CANARY}",
            "Bundle.entry[1].resource.for.reference",
            "not-supported",
        ),
        (
            1,
            "for",
            f"Patient?identifier={INTERNAL}|{CANARY}&active=true",
            "Bundle.entry[1].resource.for.reference",
            "not-supported",
        ),
        (
            1,
            "for",
            f"Patient?family={INTERNAL}|{CANARY}",
            "Bundle.entry[1].resource.for.reference",
            "not-supported",
        ),
        (1, "for", "Patient?", "Bundle.entry[1].resource.for.reference", "not-supported"),
        (
            1,
            "for",
            f"Group?identifier={INTERNAL}|{CANARY}",
            "Bundle.entry[1].resource.for.reference",
            "not-supported",
        ),
        (
            1,
            "for",
            f"Patient?identifier={INTERNAL}|{CANARY} x",
            "Bundle.entry[1].resource.for.reference",
            "not-supported",
        ),
        (
            1,
            "for",
            f"Patient?identifier={CANARY}",
            "Bundle.entry[1].resource.for.reference",
            "not-supported",
        ),
    ],
)
def test_a_reference_that_cannot_be_resolved_as_fhir_says_is_refused(
    index: int, field: str, reference: str, expression: str, code: str
) -> None:
    problem = refusal(transaction, entry_with(index, {field: {"reference": reference}}, "resource"))
    assert (problem.expression, problem.code) == (expression, code)


def test_a_reference_to_a_later_entry_says_which_and_what_to_do() -> None:
    problem = refusal(transaction, entry_with(0, {"subject": {"reference": TASK_URL}}, "resource"))
    assert "Bundle.entry[1], a later entry" in str(problem)
    assert "put the entry it refers to first" in str(problem)
    itself = refusal(
        transaction, entry_with(0, {"subject": {"reference": REQUEST_URL}}, "resource")
    )
    assert "refers to itself" in str(itself)


def test_an_element_name_the_caller_made_up_stays_out_of_the_path() -> None:
    raw = entry_with(
        1, {CANARY: {"reference": "urn:uuid:99999999-9999-4999-8999-999999999999"}}, "resource"
    )
    problem = refusal(transaction, raw)
    assert problem.expression == "Bundle.entry[1].resource.?.reference"


def test_a_bad_key_or_tenant_is_refused_naming_the_argument() -> None:
    problem = refusal(transaction, referral(), "x" * 87)
    assert (problem.expression, problem.code) == ("idempotency_key", "value")
    one_entry = bundle("batch", post({"resourceType": "Task"}))
    problem = refusal(batch, one_entry, "x" * 87)  # its writes' keys would fit: a Bundle's key
    assert (problem.expression, problem.code) == ("idempotency_key", "value")
    assert "1 to 86" in str(problem)
    with pytest.raises(BundleProblem) as caught:
        saga_of_transaction("bad tenant", referral(), "k", requested_by="svc", crosswalk=CROSSWALK)
    assert caught.value.expression == "tenant"


def test_an_entry_over_the_input_limits_is_refused_at_its_element() -> None:
    """The limits the client applies before it starts anything (workflows/input_limits.py)."""
    long_name = {"resourceType": "Task", "status": "requested", CANARY * 8: True}
    raw = bundle("transaction", post({"resourceType": "Task"}), post(long_name))
    for translate, kind in ((transaction, "transaction"), (batch, "batch")):
        problem = refusal(translate, {**raw, "type": kind})
        assert (problem.expression, problem.code) == ("Bundle.entry[1].resource.?", "too-costly")
        assert "max_name_chars" in str(problem)


def test_a_transaction_over_the_size_of_one_command_is_refused() -> None:
    """Each entry is small enough, the saga of them all is not."""
    notes = [{"resourceType": "Task", "note": [{"text": "x" * 100_000}]} for _ in range(3)]
    problem = refusal(transaction, bundle("transaction", *map(post, notes)))
    assert (problem.expression, problem.code) == ("Bundle", "too-costly")
    assert "max_command_bytes" in str(problem)
    assert len(batch(bundle("batch", *map(post, notes)))) == 3


def test_a_resource_nested_deeper_than_python_recurses_is_refused_not_crashed() -> None:
    deep: dict[str, Any] = {"resourceType": "Task"}
    node = deep
    for _ in range(5000):
        node["extension"] = [{}]
        node = node["extension"][0]
    for translate, kind in ((transaction, "transaction"), (batch, "batch")):
        problem = refusal(translate, bundle(kind, post(deep)))
        assert problem.code == "too-costly"
        assert problem.expression.startswith("Bundle.entry[0].resource.extension[0]")


# --- batches -------------------------------------------------------------------------------------


def put(resource_type: str, rid: str, version: str | None = "3") -> dict[str, Any]:
    request: dict[str, Any] = {"method": "PUT", "url": f"{resource_type}/{rid}"}
    if version:
        request["ifMatch"] = f'W/"{version}"'
    return {
        "resource": {"resourceType": resource_type, "id": rid, "status": "final"},
        "request": request,
    }


def test_a_batch_becomes_independent_writes_keyed_by_the_bundle_key_and_the_entry_index() -> None:
    raw = bundle(
        "batch", post({"resourceType": "Observation", "status": "final"}), put("Observation", "o-9")
    )
    create, update = batch(raw)
    assert [create.idempotency_key, update.idempotency_key] == ["batch.bt-1.e0", "batch.bt-1.e1"]
    assert create.workflow_id == "wb:demo-r4:batch.bt-1.e0"
    assert (create.interaction, create.target, create.base_version) == (
        Interaction.CREATE,
        None,
        None,
    )
    assert (update.interaction, update.target, update.base_version) == (
        Interaction.UPDATE,
        "Observation/o-9",
        "3",
    )
    assert [w.idempotency_key for w in batch(copy.deepcopy(raw))] == [
        "batch.bt-1.e0",
        "batch.bt-1.e1",
    ]


def test_a_batch_resolves_conditional_references_too() -> None:
    raw = bundle(
        "batch",
        post(
            {
                "resourceType": "Observation",
                "subject": {"reference": f"Patient?identifier={INTERNAL}|p-7"},
            }
        ),
    )
    assert batch(raw)[0].resource["subject"] == {"reference": "Patient/internal:p-7"}


def test_batch_entries_that_refer_to_each_other_are_refused() -> None:
    raw = copy.deepcopy(referral())
    raw["type"] = "batch"
    problem = refusal(batch, raw)
    assert (problem.expression, problem.code) == (
        "Bundle.entry[1].resource.focus.reference",
        "invalid",
    )
    assert "independent" in str(problem)


@pytest.mark.parametrize(
    ("entry", "expression", "code"),
    [
        (put("Observation", "o-9", version=None), "Bundle.entry[0].request.ifMatch", "required"),
        (
            {
                **put("Observation", "o-9"),
                "request": {"method": "PUT", "url": "Observation/o-9", "ifMatch": "3"},
            },
            "Bundle.entry[0].request.ifMatch",
            "required",
        ),
        (
            {
                **put("Observation", "o-9"),
                "request": {"method": "PUT", "url": "Condition/o-9", "ifMatch": 'W/"3"'},
            },
            "Bundle.entry[0].request.url",
            "invalid",
        ),
        (
            {
                **put("Observation", "o-9"),
                "request": {"method": "PUT", "url": "Observation/..", "ifMatch": 'W/"3"'},
            },
            "Bundle.entry[0].request.url",
            "invalid",
        ),
        (
            {**put("Observation", "o-9"), "resource": {"resourceType": "Observation", "id": "o-1"}},
            "Bundle.entry[0].resource.id",
            "invalid",
        ),
        (
            {
                **put("Observation", "o-9"),
                "request": {"method": "DELETE", "url": "Observation/o-9"},
            },
            "Bundle.entry[0].request.method",
            "not-supported",
        ),
        (
            {
                **put("Observation", "o-9"),
                "request": {
                    "method": "PUT",
                    "url": "Observation/o-9",
                    "ifMatch": 'W/"3"',
                    "ifNoneMatch": "*",
                },
            },
            "Bundle.entry[0].request.ifNoneMatch",
            "not-supported",
        ),
    ],
)
def test_a_bad_batch_entry_is_refused_at_its_element(
    entry: dict[str, Any], expression: str, code: str
) -> None:
    problem = refusal(batch, bundle("batch", entry))
    assert (problem.expression, problem.code) == (expression, code)


def test_a_batch_over_its_entry_limit_or_of_another_type_is_refused() -> None:
    entries = [post({"resourceType": "Task"}) for _ in range(MAX_BATCH_ENTRIES + 1)]
    problem = refusal(batch, bundle("batch", *entries))
    assert (problem.expression, problem.code) == ("Bundle.entry", "too-costly")
    assert len(batch(bundle("batch", *entries[:MAX_BATCH_ENTRIES]))) == MAX_BATCH_ENTRIES
    problem = refusal(batch, referral())
    assert (problem.expression, problem.code) == ("Bundle.type", "value")


# --- the answers ---------------------------------------------------------------------------------


def step(index: int, state: WriteState | None, **fields: Any) -> SagaStepStatus:
    types = ["ServiceRequest", "Task", "Communication"]
    return SagaStepStatus(
        name=f"e{index}",
        resource_type=types[index],
        write_id=f"wb:demo-r4:saga.tx-1.e{index}",
        state=state,
        compensable=True,
        **fields,
    )


def saga_status(state: WriteState, steps: list[SagaStepStatus], **fields: Any) -> SagaStatus:
    return SagaStatus(
        workflow_id="wb-saga:demo-r4:tx-1",
        tenant="demo-r4",
        kind="transaction",
        state=state,
        steps=steps,
        **fields,
    )


def responses(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["response"] for entry in answer["entry"]]


def issues(response: dict[str, Any]) -> list[dict[str, Any]]:
    return list(response["outcome"]["issue"])


def test_a_verified_saga_answers_201_created_with_location_and_etag_per_entry() -> None:
    verified = [
        step(i, WriteState.VERIFIED, resource=f"{t}/id-{i}", version=str(i + 1))
        for i, t in enumerate(["ServiceRequest", "Task", "Communication"])
    ]
    answer = transaction_response(saga_status(WriteState.VERIFIED, verified))
    assert (answer["resourceType"], answer["type"]) == ("Bundle", "transaction-response")
    assert responses(answer) == [
        {"status": "201 Created", "location": "ServiceRequest/id-0/_history/1", "etag": 'W/"1"'},
        {"status": "201 Created", "location": "Task/id-1/_history/2", "etag": 'W/"2"'},
        {"status": "201 Created", "location": "Communication/id-2/_history/3", "etag": 'W/"3"'},
    ]


def compensated() -> SagaStatus:
    return saga_status(
        WriteState.COMPENSATED,
        [
            step(
                0,
                WriteState.VERIFIED,
                resource="ServiceRequest/a",
                version="2",
                compensation="withdrawn",
            ),
            step(1, WriteState.VERIFIED, resource="Task/b", version="2", compensation="withdrawn"),
            step(2, WriteState.REJECTED, detail="HTTP 422: processing at Communication.status"),
        ],
        error_class="validation",
        reason="step 'e2' failed; withdrawn: Task/b, ServiceRequest/a",
    )


def test_a_compensated_saga_says_which_entry_failed_with_which_error_class() -> None:
    failed = responses(transaction_response(compensated()))[2]
    assert failed["status"] == "422 Unprocessable Entity"
    assert "location" not in failed
    (issue,) = issues(failed)
    assert (issue["severity"], issue["code"], issue["expression"]) == (
        "error",
        "invalid",
        ["Bundle.entry[2]"],
    )
    assert "ended rejected (error class validation)" in issue["diagnostics"]
    assert "Communication.status" in issue["diagnostics"]


def test_a_compensated_saga_says_which_entries_were_withdrawn() -> None:
    request, task, _ = responses(transaction_response(compensated()))
    for response, location in (
        (request, "ServiceRequest/a/_history/2"),
        (task, "Task/b/_history/2"),
    ):
        assert response["status"] == "424 Failed Dependency"
        assert response["location"] == location
        (issue,) = issues(response)
        assert issue["severity"] == "warning"
        assert "was withdrawn (read back) after Bundle.entry[2] failed" in issue["diagnostics"]


def test_entries_after_the_failed_one_say_they_were_not_written() -> None:
    status = saga_status(
        WriteState.REJECTED,
        [
            step(0, WriteState.REJECTED, detail="resource.status: missing"),
            step(1, None),
            step(2, None),
        ],
        error_class="validation",
    )
    first, *rest = responses(transaction_response(status))
    assert first["status"] == "422 Unprocessable Entity"
    for response in rest:
        assert response["status"] == "424 Failed Dependency"
        assert "not written: Bundle.entry[0] failed first" in issues(response)[0]["diagnostics"]


def test_a_step_that_could_not_be_withdrawn_says_it_is_still_in_the_chart() -> None:
    status = saga_status(
        WriteState.COMPENSATION_FAILED,
        [
            step(
                0,
                WriteState.VERIFIED,
                resource="ServiceRequest/a",
                version="1",
                compensation="failed",
                detail="HTTP 409",
            ),
            step(1, WriteState.VERIFIED, resource="Task/b", version="2", compensation="withdrawn"),
            step(2, WriteState.REJECTED, detail="HTTP 422"),
        ],
        error_class="compensation",
    )
    request, task, failed = responses(transaction_response(status))
    assert (request["status"], request["location"]) == (
        "201 Created",
        "ServiceRequest/a/_history/1",
    )
    (issue,) = issues(request)
    assert issue["severity"] == "error"
    assert (
        "not withdrawn (failed): HTTP 409; the saga is compensation_failed" in issue["diagnostics"]
    )
    assert task["status"] == "424 Failed Dependency"
    assert failed["status"] == "422 Unprocessable Entity"  # rejected: its own class is not known
    assert "error class" not in issues(failed)[0]["diagnostics"]


def test_a_step_whose_write_ended_abnormally_is_the_failed_one() -> None:
    status = saga_status(
        WriteState.COMPENSATED,
        [
            step(
                0,
                WriteState.VERIFIED,
                resource="ServiceRequest/a",
                version="1",
                compensation="withdrawn",
            ),
            step(
                1,
                None,
                detail="the step's write ended abnormally (TimeoutError)",
                compensation="not_found",
            ),
            step(2, None),
        ],
        error_class="transient",
    )
    request, task, notify = responses(transaction_response(status))
    assert task["status"] == "503 Service Unavailable"
    failure, gone = issues(task)
    assert "ended abnormally (error class transient)" in failure["diagnostics"]
    assert "is not in the EHR" in gone["diagnostics"]
    assert "after Bundle.entry[1] failed" in issues(request)[0]["diagnostics"]
    assert "Bundle.entry[1] failed first" in issues(notify)[0]["diagnostics"]


def test_a_saga_refused_before_any_step_answers_every_entry_with_why() -> None:
    status = saga_status(
        WriteState.REJECTED,
        [step(0, None), step(1, None), step(2, None)],
        error_class="authorization",
        reason="caller: not allowed",
    )
    for response in responses(transaction_response(status)):
        assert response["status"] == "403 Forbidden"
        (issue,) = issues(response)
        assert issue["code"] == "forbidden"
        assert "caller: not allowed" in issue["diagnostics"]


def test_a_saga_still_running_answers_202_for_what_is_not_written_yet() -> None:
    status = saga_status(
        WriteState.IN_FLIGHT,
        [
            step(0, WriteState.VERIFIED, resource="ServiceRequest/a", version="1"),
            step(1, WriteState.IN_FLIGHT),
            step(2, None),
        ],
    )
    request, task, notify = responses(transaction_response(status))
    assert request["status"] == "201 Created"
    for response in (task, notify):
        assert response["status"] == "202 Accepted"
        assert "wb-saga:demo-r4:tx-1 is in_flight" in issues(response)[0]["diagnostics"]


def write_status(state: WriteState, **fields: Any) -> WriteStatus:
    return WriteStatus(
        workflow_id="wb:demo-r4:batch.bt-1.e0", tenant="demo-r4", state=state, **fields
    )


def test_a_batch_answers_each_write_as_it_ended() -> None:
    answer = batch_response(
        [
            write_status(WriteState.VERIFIED, resource="Observation/a", version="1"),
            write_status(
                WriteState.VERIFIED,
                interaction=Interaction.UPDATE,
                resource="Observation/b",
                version="4",
            ),
            write_status(
                WriteState.REJECTED, error_class="unmapped", reason="subject: no Patient in tenant"
            ),
            write_status(
                WriteState.PENDING_CONFIRMATION, error_class="ambiguous", reason="no answer"
            ),
            write_status(WriteState.IN_FLIGHT),
        ]
    )
    assert answer["type"] == "batch-response"
    created, updated, rejected, waiting, running = responses(answer)
    assert created == {
        "status": "201 Created",
        "location": "Observation/a/_history/1",
        "etag": 'W/"1"',
    }
    assert updated == {"status": "200 OK", "location": "Observation/b/_history/4", "etag": 'W/"4"'}
    assert rejected["status"] == "422 Unprocessable Entity"
    (issue,) = issues(rejected)
    assert (issue["code"], issue["expression"]) == ("not-found", ["Bundle.entry[2]"])
    assert (
        "ended rejected (error class unmapped): subject: no Patient in tenant"
        in issue["diagnostics"]
    )
    assert waiting["status"] == running["status"] == "202 Accepted"
    assert "waits for a person" in issues(waiting)[0]["diagnostics"]
    assert issues(waiting)[0]["expression"] == ["Bundle.entry[3]"]
    assert "not written yet" in issues(running)[0]["diagnostics"]
