"""What the checks of issue #17 (security, round 2) cost per write, against what a write costs
(README, Security): proving the caller (bench/callers.py), the keyed idempotency key, the keyed
ledger chain, the reasons grammar and the log filters. The payload codec's own cost is
``python -m bench.codec``: #17 made it refuse more (plain, system-sealed, foreign payloads), which
is a comparison per payload, and bound the workflow id into its associated data (a few bytes).

    .venv/bin/python -m bench.security_checks [--rounds 2000] [--write-cpu-ms 47.1]

Per write, counted as a verified create runs them: one credential built and verified once, one
keyed content key (client), LEDGER_RECORDS ledger records sealed with the keyed chain (the
unkeyed hash they replaced is subtracted), one reason passed through the grammar, and
LOG_RECORDS log records through the filters. Prints µs per write for each, their sum, and the
share of a write's CPU (worker + server; ``--write-cpu-ms``). The budget is 5% of a write.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

import httpx

from activities.audit_chain import chain_hash, keyed_hash
from adapters.ids import content_key
from adapters.reasons import safe_reason
from bench.callers import WRITE_CPU_MS, best_of, caller_costs
from workers import samples
from workers.hygiene import ActivityFailureFilter, QueryFreeUrlFilter

#: a verified create's ledger records: its transitions (requested → verified) and exchanges
LEDGER_RECORDS = 8
#: log records a verified create passes through the filters (the EHR client's requests at INFO)
LOG_RECORDS = 4
#: a ledger record's body as stored (codes, ids and references only), about this long
LEDGER_BODY = (
    '{"entry_key":"wb:bench:k1/t3","tenant":"bench","correlation_id":"wb:bench:k1",'
    '"kind":"transition","at":"2026-11-26T08:00:00Z","requested_by":"nursing-app",'
    '"resource_type":"Observation","resource":"Observation/1a2b3c","version":"1",'
    '"state":"verified","outcome":"read back matches","error_class":null}'
)


def log_record() -> logging.LogRecord:
    """What httpx logs for a request (its URL already parsed: httpx made it for the request)."""
    url = httpx.URL("https://ehr.example/fhir/r4/Observation?identifier=x%7Cy")
    args = ("GET", url, "200 OK")
    return logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, 'HTTP Request: %s %s "%s"', args, None
    )


async def main(rounds: int, write_cpu_ms: float) -> None:
    key, secret = os.urandom(32), os.urandom(32)
    resource = samples.blood_pressure("p1", 120, 80)
    reason = "ehr_rejected: HTTP 422 (processing; code-invalid at Observation.code.coding[0])"
    activity_filter, url_filter = ActivityFailureFilter(), QueryFreeUrlFilter()

    record = log_record()
    as_logged = record.args

    def filters() -> None:
        record.args = as_logged  # the filter rewrites them
        activity_filter.filter(record)
        url_filter.filter(record)

    client, worker, _sizes = await caller_costs(rounds)
    keyed = best_of(rounds, lambda: keyed_hash(key, "bench", 7, "0" * 64, LEDGER_BODY))
    unkeyed = best_of(rounds, lambda: chain_hash("bench", 7, "0" * 64, LEDGER_BODY))
    worker = {
        **{f"caller: {name}": seconds for name, seconds in worker.items()},
        f"ledger: keyed chain x{LEDGER_RECORDS} (less the unkeyed hash)": LEDGER_RECORDS
        * max(keyed - unkeyed, 0.0),
        "reasons grammar x1": best_of(rounds, lambda: safe_reason(reason)),
        f"log filters x{LOG_RECORDS}": LOG_RECORDS * best_of(rounds, filters),
    }
    client = {
        **{f"caller: {name}": seconds for name, seconds in client.items()},
        "keyed idempotency key (no --key)": best_of(
            rounds, lambda: content_key(secret, "bench", resource)
        ),
    }
    for name, seconds in {**client, **worker}.items():
        print(f"{name:<52}{seconds * 1e6:>9.1f} µs")
    worker_total = sum(worker.values())
    print(f"{'worker, per write':<52}{worker_total * 1e6:>9.1f} µs")
    print(f"{'client, per write':<52}{sum(client.values()) * 1e6:>9.1f} µs")
    share = worker_total * 1e3 / write_cpu_ms
    print(
        f"worker share of a write's CPU ({write_cpu_ms:g} ms, worker + server): {share:.2%} "
        f"({'within' if share <= 0.05 else 'OVER'} the 5% budget)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--write-cpu-ms", type=float, default=WRITE_CPU_MS)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.write_cpu_ms))
