"""``python -m bench.profile_worker worker --tenants FILE``: the product worker with a sampling
profiler, for finding where its CPU goes (no py-spy here; Python 3.11 has no perf support).

Every 2 ms a thread looks at every Python thread's stack. A stack whose innermost frame is a known
wait (the event loop's select, an idle executor thread, a lock or queue wait) is idle; any other
is a busy sample, charged to each package on the stack (inclusive) and to the package of the
innermost frame. Threads that are not Python threads (Temporal's Rust core: tokio) are measured
by their CPU ticks from /proc/self/task. On exit the totals go to ``$BENCH_PROFILE_OUT`` (JSON).
The sampler itself costs CPU, and the GIL switch interval is shortened to 0.2 ms so that samples
are not biased towards system calls: use it to explain figures, not to measure them.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import FrameType

from workers.cli import main as cli_main

_STDLIB = sysconfig.get_paths()["stdlib"]
_ROOT = str(Path(__file__).resolve().parents[1])
_INTERVAL = 0.002
#: innermost frames kept per busy sample in ``python_busy_by_stack`` (who calls a hot leaf)
_STACK_DEPTH = 8
#: (file name ending, function) of innermost frames that mean "waiting, not working"
_IDLE = {
    ("selectors.py", "select"),
    ("threading.py", "wait"),
    ("threading.py", "_wait_for_tstate_lock"),
    ("queue.py", "get"),
    ("thread.py", "_worker"),
}


#: What a busy sample is spent on: the first rule, from the innermost frame outwards, whose
#: marker is in a frame's file path names the part (the leaf's own part wins over its callers').
_PARTS = (
    ("payload codec (AES-GCM, zlib)", ("workers/codec.py",)),
    ("audit ledger (SQLite, chain)", ("activities/audit_", "activities/write_records.py")),
    ("telemetry", ("opentelemetry", "workers/telemetry.py", "workflows/write_metrics.py")),
    ("caller proof (JWT)", ("/jwt/", "adapters/callers.py", "adapters/caller_keys.py")),
    ("EHR HTTP (httpx, SMART tokens)", ("/httpx/", "/httpcore/", "/h11/", "/anyio/")),
    ("validate, map, authorize", ("/fhirpathpy/", "/fhir/", "/fhir_core/", "/adapters/")),
    ("EHR activities", ("/activities/",)),
    ("workflow code", ("/workflows/",)),
    ("workflow sandbox", ("temporalio/worker/workflow_sandbox",)),
    (
        "payload conversion (pydantic, protobuf)",
        ("temporalio/converter", "contrib/pydantic", "/pydantic", "/google/"),
    ),
    ("Temporal SDK", ("/temporalio/",)),
    ("event loop, threads", ("asyncio/", "concurrent/", "threading.py", "selectors.py")),
)


def part_of(filenames: list[str]) -> str:
    """The part a sample's stack (innermost first) is spent on (``_PARTS``), else ``other``."""
    for filename in filenames:
        for part, markers in _PARTS:
            if any(marker in filename for marker in markers):
                return part
    return "other"


def package_of(filename: str) -> str:
    """A short name for where code lives: ``temporalio.worker._workflow``, ``pydantic_core``,
    ``stdlib:asyncio``, ``project:workflows``..."""
    if "site-packages/" in filename:
        parts = filename.split("site-packages/", 1)[1].split("/")
        if parts[0] == "temporalio" and len(parts) > 2:
            return ".".join([parts[0], parts[1], parts[2].removesuffix(".py")])
        if parts[0] == "temporalio":
            return "temporalio." + parts[1].removesuffix(".py")
        return parts[0].removesuffix(".py")
    if filename.startswith(_STDLIB):
        return "stdlib:" + filename[len(_STDLIB) + 1 :].split("/")[0].removesuffix(".py")
    if filename.startswith(_ROOT):
        return "project:" + filename[len(_ROOT) + 1 :].split("/")[0]
    return filename


def _thread_ticks() -> dict[str, tuple[str, int]]:
    """{tid: (thread name, user+system ticks)} for every thread of this process."""
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as handle:
                raw = handle.read()
        except OSError:
            continue
        fields = raw.rsplit(")", 1)[1].split()
        found[tid] = (raw[raw.index("(") + 1 : raw.rindex(")")], int(fields[11]) + int(fields[12]))
    return found


def _pool_name(thread_name: str) -> str:
    """A thread's name without its number in the pool (``asyncio_3`` -> ``asyncio``): the event
    loop is ``MainThread``, workflow activations run in ``temporal_workflow``, blocking
    activities (the audit ledger) in the loop's default executor."""
    return thread_name.rstrip("0123456789").rstrip("_-") or thread_name


class Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.inclusive: Counter[str] = Counter()
        self.leaf: Counter[str] = Counter()
        self.leaf_functions: Counter[str] = Counter()
        self.stacks: Counter[str] = Counter()
        self.parts: Counter[str] = Counter()
        self.thread_parts: dict[str, Counter[str]] = defaultdict(Counter)
        self.busy = 0
        self.idle = 0
        self._halt = threading.Event()
        self._ticks_before = _thread_ticks()
        # threads end before the report (the SDK stops its executors at shutdown): their last
        # ticks and names are kept as they are seen, once a second
        self._ticks_seen: dict[str, tuple[str, int]] = {}
        self._python_names: dict[str, str] = {}
        self._thread_names: dict[int, str] = {}

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def _sample(self, frame: FrameType, thread: str) -> None:
        code = frame.f_code
        if (code.co_filename.rsplit("/", 1)[-1], code.co_name) in _IDLE:
            self.idle += 1
            return
        self.busy += 1
        files: list[str] = []
        names: list[str] = []
        current: FrameType | None = frame
        while current is not None:
            files.append(current.f_code.co_filename)
            names.append(f"{files[-1].rsplit('/', 1)[-1]}:{current.f_code.co_name}")
            current = current.f_back
        packages = [package_of(filename) for filename in files]
        self.stacks[" < ".join(names[:_STACK_DEPTH])] += 1
        part = part_of(files)
        self.parts[part] += 1
        self.thread_parts[thread][part] += 1
        self.leaf[packages[0]] += 1
        self.leaf_functions[f"{packages[0]}:{code.co_name}:{frame.f_lineno}"] += 1
        for package in set(packages):
            self.inclusive[package] += 1

    def run(self) -> None:
        own = threading.get_ident()
        rounds = 0
        self._see_threads()
        while not self._halt.wait(_INTERVAL):
            for ident, frame in sys._current_frames().items():
                if ident != own:
                    self._sample(frame, self._thread_names.get(ident, "?"))
            rounds += 1
            if rounds % round(1 / _INTERVAL) == 0:
                self._see_threads()

    def _see_threads(self) -> None:
        self._ticks_seen.update(_thread_ticks())
        threads = threading.enumerate()
        self._python_names.update({str(t.native_id): _pool_name(t.name) for t in threads})
        self._thread_names.update({t.ident: _pool_name(t.name) for t in threads if t.ident})

    def report(self) -> dict[str, object]:
        self._see_threads()
        python = self._python_names
        ticks: Counter[str] = Counter()
        for tid, (name, after) in self._ticks_seen.items():
            spent = after - self._ticks_before.get(tid, (name, 0))[1]
            ticks[f"python: {python[tid]}" if tid in python else f"native: {name}"] += spent
        total = sum(ticks.values()) or 1

        def shares(counter: Counter[str]) -> dict[str, float]:
            return {k: round(v / (self.busy or 1), 4) for k, v in counter.most_common(30)}

        return {
            "cpu_ticks_by_thread": {k: round(v / total, 4) for k, v in ticks.most_common()},
            "python_samples": {"busy": self.busy, "idle": self.idle},
            "python_busy_by_leaf": shares(self.leaf),
            "python_busy_inclusive": shares(self.inclusive),
            "python_busy_by_leaf_function": shares(self.leaf_functions),
            "python_busy_by_stack": shares(self.stacks),
            "python_busy_by_part": shares(self.parts),
            "python_busy_by_thread_and_part": {
                thread: {k: round(v / total_samples, 4) for k, v in parts.most_common()}
                for thread, parts in self.thread_parts.items()
                if (total_samples := sum(parts.values()))
            },
        }


def main() -> None:
    # A busy thread otherwise keeps the GIL for up to 5 ms, and samples would land mostly where
    # it releases it voluntarily (system calls): switch often so samples fall inside Python code.
    sys.setswitchinterval(0.0002)
    sampler = Sampler()
    sampler.start()
    began = time.monotonic()
    code = cli_main(sys.argv[1:])
    sampler.stop()
    out = os.environ.get("BENCH_PROFILE_OUT")
    if out:
        report = {"seconds": round(time.monotonic() - began, 1), **sampler.report()}
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.flush()
    os._exit(code)  # like workers.cli.run: the core bridge may abort during finalization


if __name__ == "__main__":
    main()
