"""Benchmark: a3s_nb frames against the JSON parse floor, in one process.

Run by hand (not part of the test suite)::

    python benchmarks/bench_frames.py                   # 1,000 and 5,000 sessions
    python benchmarks/bench_frames.py --sizes 200 --repeat 1
    python benchmarks/bench_frames.py --baseline main --only all_frames   # before / after

It clones the sessions of the fixture store (written by the real a3s-code 3.1.0 SDK) with
fresh session and run ids into ``benchmarks/.data/store-<N>`` (git-ignored, reused), then,
in this one process, runs every phase once per round, interleaved, for ``--repeat`` rounds
and keeps the best CPU and the best wall time of each:

* ``floor.<parser>.<part>``  read and parse, with orjson and with msgspec, exactly the
  files of one part the frames read (session documents, ``runs/``, ``traces/``,
  ``verification/``; never ``artifacts/``). A frame's floor is the sum, over the parts it
  reads, of the faster parser's best.
* ``frame.<name>``    one frame function built from the files (its frame cache, and for
  ``sessions`` its index, removed first)
* ``stat_every_file`` one ``stat`` of every file of every session (artifacts manifests
  included), as a reference: the least a new process's check for edits in place can cost
  (``sessions()`` in a new kernel does that and little else)
* ``all_frames``      the seven frames in one pass, built from the files
* ``all_frames_parallel`` ``all_frames(workers=2)``: the same build split between two
  worker processes (their fork server started by an untimed first call). Its CPU is the
  calling process's only (the workers are the fork server's children): compare wall time
* ``all_frames_cold`` the same with no ``.a3s_nb`` caches at all: every session is first
  checked with ``Store.load()`` (see docs/frames.md), which also reads artifacts
* ``all_frames_warm`` ``all_frames`` on an unchanged store: served from the frame cache
  (the store watched since the second call: only what changed is stat'ed)
* ``all_frames_warm_unwatched`` the same with the watch off (``A3S_NB_WATCH=0``): every
  file stat'ed, as in a new kernel
* ``one_changed``     ``all_frames`` after one session's run file was rewritten
* ``sessions_warm``   ``sessions()`` served from its index (``..._unwatched``: as above)
* ``new_kernel.<fn>`` the first ``all_frames`` / ``sessions()`` call of a new process that
  has pandas, pyarrow and a3s_nb imported, the caches on disk (measured in that process)
* ``new_kernel.import`` ``import a3s_nb`` in a new process that has pandas and pyarrow
  imported
* ``new_kernel.cold``, ``new_kernel.cold_workers2`` the same process's first
  ``all_frames`` with no ``.a3s_nb`` caches, in it and with ``workers=2`` (its fork
  server started by that call; compare wall time: the workers' CPU is not counted)

Each new-process phase also parses the floor's files (orjson) in its own process right
after its call, and the ratio of the two is printed per round under the table: the
machine is shared, its load swings from one minute to the next, and a ratio of two
timings taken seconds apart moves less than one of two bests taken minutes apart.

With ``--mlflow VENV`` the same sessions' runs are also exported to a local MLflow tracking
server (sqlite backend, untimed) and MLflow's ``search_traces`` is timed in VENV's Python.

With ``--baseline REV`` every phase also runs with a3s_nb as of git revision ``REV``:
two worker processes (one per tree, each on its own copy of the store) measure each phase
once per round, interleaved, and the table shows before, after and their ratio.

Phases other than ``*_cold`` run as a notebook does after its first call: the load verdicts
are cached. CPU is user + system time of the process; peak memory is the growth of the
peak resident set during the phase (Linux ``VmHWM``, reset through
``/proc/self/clear_refs``), so NumPy and Arrow buffers count; it is compared with the size
of the files the phase's floor reads. The machine is shared: compare CPU, and ratios within
one run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import json
import os
import re
import resource
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "tests" / "fixtures" / "a3s-code-3.1.0"
DATA = HERE / ".data"
RUN_ID = re.compile(r"run-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FRAGMENTS = ("runs", "traces", "verification")

# ============================================================================ the store


def build_store(n: int) -> Path:
    """``n`` sessions cloned round-robin from the fixture, with fresh ids."""
    dest = DATA / f"store-{n}"
    marker = dest / ".bench-complete"
    if marker.exists():
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    for d in FRAGMENTS:
        (dest / d).mkdir(parents=True)
    (dest / "artifacts").mkdir()
    sources = sorted(p.stem for p in FIXTURE.glob("*.json"))
    texts = {}
    for sid in sources:
        files = {"session": FIXTURE / f"{sid}.json"}
        files.update({d: FIXTURE / d / f"{sid}.json" for d in FRAGMENTS})
        files["artifacts"] = FIXTURE / "artifacts" / sid / "artifacts.json"
        texts[sid] = {k: p.read_text(encoding="utf-8") for k, p in files.items() if p.exists()}
    for i in range(n):
        old = sources[i % len(sources)]
        new = f"bench-{i:06d}-{uuid.uuid4().hex[:12]}"
        run_ids: dict[str, str] = {}

        def fresh_run(m: re.Match, run_ids: dict[str, str] = run_ids) -> str:
            return run_ids.setdefault(m.group(0), f"run-{uuid.uuid4()}")

        for part, text in texts[old].items():
            text = RUN_ID.sub(fresh_run, text.replace(old, new))
            if part == "session":
                path = dest / f"{new}.json"
            elif part == "artifacts":
                path = dest / "artifacts" / new / "artifacts.json"
                path.parent.mkdir()
            else:
                path = dest / part / f"{new}.json"
            path.write_text(text, encoding="utf-8")
    marker.write_text(str(n))
    return dest


# ============================================================================ phases

#: The files each frame reads (what its floor parses).
FRAME_PARTS = {
    "sessions": ("session", "runs", "traces", "verification"),
    "messages": ("session",),
    "traces": ("traces",),
    "runs": ("session", "runs"),
    "run_events": ("runs",),
    "spans": ("runs",),
    "verification": ("verification",),
}
PARTS = ("session", "runs", "traces", "verification")


def part_files(store: Path) -> dict[str, list[str]]:
    """The files of each part the frames read, listed once (outside any timing)."""
    return {
        "session": sorted(str(p) for p in store.glob("*.json")),
        **{d: sorted(str(p) for p in (store / d).glob("*.json")) for d in FRAGMENTS},
    }


def _parsers() -> dict[str, Callable[[bytes], Any]]:
    out: dict[str, Callable[[bytes], Any]] = {}
    with contextlib.suppress(ImportError):
        import orjson

        out["orjson"] = orjson.loads
    with contextlib.suppress(ImportError):
        import msgspec

        out["msgspec"] = msgspec.json.Decoder().decode
    if not out:
        raise SystemExit("the floor needs orjson or msgspec: pip install orjson msgspec")
    return out


def floor_phase(parse: Callable[[bytes], Any], files: list[str]) -> Callable[[], int]:
    def run() -> int:
        for path in files:
            with open(path, "rb") as f:
                parse(f.read())
        return len(files)

    return run


def stat_every_file(store: Path) -> int:
    """One ``stat`` per file of every session: the least a change check that notices an
    edit in place (same size, time set back) can cost."""
    n = 0
    for d in (store, *(store / f for f in FRAGMENTS)):
        fd = os.open(d, os.O_RDONLY)
        try:
            for name in os.listdir(fd):
                if name.endswith(".json"):
                    os.stat(name, dir_fd=fd)
                    n += 1
        finally:
            os.close(fd)
    fd = os.open(store / "artifacts", os.O_RDONLY)
    try:
        for name in os.listdir(fd):
            with contextlib.suppress(OSError):
                os.stat(f"{name}/artifacts.json", dir_fd=fd)
                n += 1
    finally:
        os.close(fd)
    return n


def drop_caches(store: Path, *names: str) -> None:
    for name in names:
        path = store / ".a3s_nb" / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


_changed_at = [0.0]


def settle() -> None:
    """Wait until the last change is out of the caches' racy window (2 s)."""
    time.sleep(max(0.0, _changed_at[0] + 2.1 - time.time()))


def change_one_session(store: Path) -> None:
    """Rewrite one session's run file with a new prompt, as a save would."""
    path = sorted((store / "runs").glob("*.json"))[0]
    runs = json.loads(path.read_text(encoding="utf-8"))
    runs[0]["snapshot"]["prompt"] = f"changed {time.time_ns()}"
    path.write_text(json.dumps(runs, indent=2), encoding="utf-8")
    _changed_at[0] = time.time()


def frame_phase(store: Path, name: str) -> Callable[[], int]:
    import a3s_nb

    def run() -> int:
        return len(getattr(a3s_nb, name)(store, progress=False))

    return run


def all_frames_phase(store: Path, **kwargs: Any) -> Callable[[], int]:
    import a3s_nb

    def run() -> int:
        return sum(len(df) for df in a3s_nb.all_frames(store, progress=False, **kwargs).values())

    return run


def unwatched(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with the store's watch turned off: every file stat'ed, as a new kernel does."""

    def run() -> Any:
        os.environ["A3S_NB_WATCH"] = "0"
        try:
            return fn()
        finally:
            del os.environ["A3S_NB_WATCH"]

    return run


#: A new kernel's first call: pandas, pyarrow and a3s_nb imported, the caches on disk.
_NEW_KERNEL = """
import json, resource, sys, time
import pandas, pyarrow
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0, t0 = cpu(), time.perf_counter()
def kib(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":"))
import a3s_nb
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM from here: the call's growth of the peak resident set
rss0 = kib("VmRSS")
if sys.argv[2] != "import":
    kw = {"workers": int(sys.argv[3])} if len(sys.argv) > 3 else {}
    c0, t0 = cpu(), time.perf_counter()
    out = getattr(a3s_nb, sys.argv[2])(sys.argv[1], progress=False, **kw)
wall, used = time.perf_counter() - t0, cpu() - c0
peak = (kib("VmHWM") - rss0) / 1024
rows = 0 if sys.argv[2] == "import" else len(out) if sys.argv[2] == "sessions" else sum(
    map(len, out.values())
)
# the floor again, in this process right after the call: the machine's load swings from
# second to second, so a ratio of two numbers taken moments apart is the steadier one
import glob, orjson
c1 = cpu()
for part in ("", "/runs", "/traces", "/verification"):  # the files the floor reads
    for path in glob.glob(glob.escape(sys.argv[1] + part) + "/*.json"):
        with open(path, "rb") as f:
            orjson.loads(f.read())
floor = cpu() - c1
print("@@" + json.dumps({"cpu": used, "wall": wall, "peak": peak, "rows": rows, "floor": floor}))
"""


#: A kernel imports byte-compiled modules (an installed package has its .pyc files): with
#: PYTHONDONTWRITEBYTECODE set, every new process would compile a3s_nb from source again,
#: so the new-kernel processes keep their .pyc under benchmarks/.data (the best of the
#: rounds is then a call with them compiled, as in a kernel).
_KERNEL_ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "PYTHONPYCACHEPREFIX": str(DATA / "pycache"),
}


def new_kernel_phase(store: Path, name: str, workers: int | None = None) -> Callable[[], int]:
    """The first ``name`` call of a new process (measured in it; with ``workers``, its
    fork server's start included, and its CPU the calling process's only)."""
    import subprocess

    def run() -> Any:
        out = subprocess.run(
            [sys.executable, "-c", _NEW_KERNEL, str(store), name]
            + ([] if workers is None else [str(workers)]),
            # not the checkout's root: `python -c` puts the working directory first on
            # sys.path, which made the baseline's process import the checked-out a3s_nb
            # (and rebuild the baseline store's caches, keyed by the other tree's code)
            cwd=store.parent,
            env=_KERNEL_ENV,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return json.loads(out.split("@@", 1)[1])

    run.external = True  # type: ignore[attr-defined]
    return run


# ============================================================================ measuring


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def measure(fn: Callable[[], int], before: Callable[[], None] | None = None) -> dict:
    """One timed call: CPU (user + system) and wall seconds, peak RSS growth in MiB."""
    if before is not None:
        before()
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    if getattr(fn, "external", False):  # measured in its own process
        return fn()  # type: ignore[return-value]
    rss0 = _status_kib("VmRSS")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    rows = fn()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = (_status_kib("VmHWM") - rss0) / 1024
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"cpu": cpu, "wall": wall, "peak": peak, "rows": rows}


Phases = dict[str, tuple[Callable[[], int], Callable[[], None] | None]]


def prepare(n: int) -> tuple[Path, dict[str, list[str]], dict[str, int]]:
    """The store of ``n`` sessions, its files per part and their sizes."""
    t = time.perf_counter()
    store = build_store(n)
    files = part_files(store)
    sizes = {p: sum(os.path.getsize(f) for f in fs) for p, fs in files.items()}
    print(
        f"\n== {n:,} sessions: {sum(sizes.values()) / 2**20:,.0f} MiB in "
        f"{sum(map(len, files.values())):,} files the frames read "
        f"({time.perf_counter() - t:.1f} s to prepare)",
        flush=True,
    )
    return store, files, sizes


def make_phases(store: Path, files: dict[str, list[str]], only: set[str] | None) -> Phases:
    """Every phase (the floors first), each a timed function and an untimed set-up."""
    import a3s_nb

    parsers = _parsers()
    # the load verdicts and the sessions index, as a notebook has them after a first call
    a3s_nb.all_frames(store, progress=False)
    a3s_nb.sessions(store, progress=False)
    # an a3s_nb with workers=: its fork server started (a first call's cost, not timed)
    parallel = "workers" in inspect.signature(a3s_nb.all_frames).parameters
    if parallel:
        a3s_nb.all_frames(store, ids=a3s_nb.FileStore(store).list()[:100], workers=2)
    phases: Phases = {}
    for parser, parse in parsers.items():
        for part in PARTS:
            phases[f"floor.{parser}.{part}"] = (floor_phase(parse, files[part]), None)
    # not a floor of the frames: what a new process's change check cannot go below
    phases["stat_every_file"] = (lambda: stat_every_file(store), None)
    for name in FRAME_PARTS:
        drop = ("frames", "index.json") if name == "sessions" else ("frames",)
        phases[f"frame.{name}"] = (frame_phase(store, name), lambda d=drop: drop_caches(store, *d))
    phases["all_frames"] = (all_frames_phase(store), lambda: drop_caches(store, "frames"))
    if parallel:
        phases["all_frames_parallel"] = (
            all_frames_phase(store, workers=2),
            lambda: drop_caches(store, "frames"),
        )
    phases["all_frames_cold"] = (
        all_frames_phase(store),
        lambda: drop_caches(store, "frames", "index.json", "loadcheck.json"),
    )

    def warm() -> None:
        settle()
        a3s_nb.all_frames(store, progress=False)

    def warm_then_change() -> None:
        warm()
        change_one_session(store)

    phases["all_frames_warm"] = (all_frames_phase(store), warm)
    phases["all_frames_warm_unwatched"] = (unwatched(all_frames_phase(store)), warm)
    phases["one_changed"] = (all_frames_phase(store), warm_then_change)
    phases["new_kernel.import"] = (new_kernel_phase(store, "import"), None)
    for name in ("all_frames", "sessions"):
        phases[f"new_kernel.{name}"] = (
            new_kernel_phase(store, name),
            lambda: (settle(), a3s_nb.all_frames(store, progress=False), a3s_nb.sessions(store)),
        )
    # the cold build in a new process, in it and with two workers (fork server included)
    cold = ("frames", "index.json", "loadcheck.json")
    phases["new_kernel.cold"] = (
        new_kernel_phase(store, "all_frames"),
        lambda: drop_caches(store, *cold),
    )
    if parallel:
        phases["new_kernel.cold_workers2"] = (
            new_kernel_phase(store, "all_frames", workers=2),
            lambda: drop_caches(store, *cold),
        )
    phases["sessions_warm"] = (
        frame_phase(store, "sessions"),
        # the index in place, out of the racy window of the last change, untimed
        lambda: (settle(), a3s_nb.sessions(store, progress=False)),
    )
    phases["sessions_warm_unwatched"] = (
        unwatched(frame_phase(store, "sessions")),
        lambda: (settle(), a3s_nb.sessions(store, progress=False)),
    )
    if only:
        phases = {k: v for k, v in phases.items() if k.startswith("floor") or k in only}
    return phases


def _keep_best(best: dict[str, dict], name: str, m: dict) -> None:
    b = best.setdefault(name, {"cpu": m["cpu"], "wall": m["wall"], "peak": 0.0, "worst": 0.0})
    b["cpu"], b["wall"] = min(b["cpu"], m["cpu"]), min(b["wall"], m["wall"])
    b["worst"] = max(b["worst"], m["cpu"])
    if m.get("floor"):  # a new process's call over the floor parsed right after it
        b.setdefault("paired", []).append(m["cpu"] / m["floor"])
    b["peak"] = max(b["peak"], m["peak"])
    b["rows"] = m["rows"]


def _floor_of(best: dict[str, dict], parts: tuple[str, ...]) -> dict:
    """A phase's floor: per part it reads, the faster parser's best."""
    out = {"cpu": 0.0, "wall": 0.0}
    for part in parts:
        for key in out:
            out[key] += min(v[key] for k, v in best.items() if k.endswith(f".{part}"))
    return out


def bench(n: int, repeat: int, only: set[str] | None) -> dict[str, dict]:
    store, files, sizes = prepare(n)
    parsers = _parsers()
    phases = make_phases(store, files, only)
    best: dict[str, dict] = {}
    for r in range(repeat):  # interleaved: every phase once per round, best of the rounds
        for name, (fn, before) in phases.items():
            _keep_best(best, name, measure(fn, before))
        print(f"   round {r + 1}/{repeat} done", flush=True)
    floors = {k: v for k, v in best.items() if k.startswith("floor.")}

    def floor_of(parts: tuple[str, ...]) -> dict:
        return _floor_of(floors, parts)

    print()
    for parser in parsers:
        keys = ("cpu", "wall", "worst")
        tot = {k: sum(best[f"floor.{parser}.{part}"][k] for part in PARTS) for k in keys}
        print(
            f"   {parser:<8} over the files the frames read: cpu {tot['cpu']:.3f} s "
            f"(the slowest round {tot['worst']:.3f} s: the machine's noise), "
            f"wall {tot['wall']:.3f} s"
        )
    print()
    print(
        f"| {n:,} sessions | floor cpu s | cpu s | cpu / floor | floor wall s | wall s "
        "| wall / floor | peak MiB | peak / bytes read |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for name, b in best.items():
        if name.startswith("floor."):
            continue
        parts = FRAME_PARTS[name.split(".", 1)[1]] if name.startswith("frame.") else PARTS
        fl = floor_of(parts)
        size = sum(sizes[p] for p in parts)
        rows.append(name)
        print(
            f"| {name} | {fl['cpu']:.3f} | {b['cpu']:.3f} | {b['cpu'] / fl['cpu']:.2f} | "
            f"{fl['wall']:.3f} | {b['wall']:.3f} | {b['wall'] / fl['wall']:.2f} | "
            f"{b['peak']:.0f} | {b['peak'] * 2**20 / size:.2f} |"
        )
    paired = {name: sorted(b["paired"]) for name, b in best.items() if b.get("paired")}
    if paired:
        print(
            "\n   Each new-process phase over the floor parsed in the same process right"
            " after it\n   (orjson over the same files), per round: the ratio the machine's"
            " load moves least"
        )
        for name, ratios in paired.items():
            print(f"   {name:<28} " + ", ".join(f"{r:.2f}" for r in ratios))
    print(flush=True)
    return best


# ============================================================================ MLflow

_MLFLOW_SEARCH = """
import json, resource, sys, time
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
best = None
for _ in range(int(sys.argv[3])):
    c0, t0 = cpu(), time.perf_counter()
    traces = mlflow.search_traces(locations=[sys.argv[2]], return_type="list", max_results=10**7)
    m = {"cpu": cpu() - c0, "wall": time.perf_counter() - t0, "rows": len(traces)}
    best = m if best is None or m["wall"] < best["wall"] else best
print("@@" + json.dumps(best))
"""


def mlflow_side_by_side(store: Path, floor: dict, repeat: int, venv: Path) -> None:
    """MLflow's ``search_traces`` over the same sessions' runs (exported to a local MLflow
    tracking server, sqlite backend, untimed), in MLflow's own venv: best wall time of
    ``repeat`` calls and the client's CPU, each against the floor of this run."""
    import signal
    import socket
    import subprocess
    import tempfile
    import urllib.request

    import a3s_nb

    venv = venv.absolute()  # the server runs in a temporary directory
    exe = venv / "bin" / "mlflow"
    if not exe.exists():
        print(f"   MLflow: {exe} not found (make otel-backend builds it); skipped")
        return
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [str(exe), "server", "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=2).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the MLflow server did not start") from None
                    time.sleep(0.5)
            t = time.perf_counter()
            sent = a3s_nb.to_otel(
                store, endpoint=url, headers={"x-mlflow-experiment-id": "0"}, timeout=600
            )
            print(
                f"   MLflow: {sent['traces']:,} traces, {sent['spans']:,} spans loaded "
                f"({time.perf_counter() - t:.0f} s, untimed)",
                flush=True,
            )
            done = subprocess.run(
                [str(venv / "bin" / "python"), "-c", _MLFLOW_SEARCH, url, "0", str(repeat)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            m = json.loads(done.stdout.split("@@", 1)[1])
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    print(
        f"| MLflow search_traces ({m['rows']:,} traces) | floor cpu {floor['cpu']:.3f} s "
        f"| client cpu {m['cpu']:.3f} s ({m['cpu'] / floor['cpu']:.1f}x) "
        f"| wall {m['wall']:.3f} s ({m['wall'] / floor['wall']:.1f}x the floor's wall) |",
        flush=True,
    )


# ============================================================================ before / after


def worker(store: Path, only: set[str] | None) -> None:
    """Serve measurements over stdin / stdout for ``compare`` (one a3s_nb tree each)."""
    files = part_files(store)
    phases = make_phases(store, files, only)
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the channel
    print("@@" + json.dumps(list(phases)), file=out, flush=True)
    for line in sys.stdin:
        fn, before = phases[line.strip()]
        print("@@" + json.dumps(measure(fn, before)), file=out, flush=True)


class _Tree:
    """A worker process importing a3s_nb from ``path``."""

    def __init__(self, label: str, path: Path, store: Path, only: set[str] | None):
        import subprocess

        self.label = label
        env = {**os.environ, "PYTHONPATH": str(path)}
        cmd = [sys.executable, __file__, "--worker", str(store)]
        if only:
            cmd += ["--only", *sorted(only)]
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.phases: list[str] = self._reply()

    def _reply(self) -> Any:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@@"):
                return json.loads(line[2:])
        raise SystemExit(f"the {self.label} worker ended")

    def measure(self, phase: str) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(phase + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def _tree_at(rev: str, into: Path) -> Path:
    """The a3s_nb package of git revision ``rev``, extracted under ``into``."""
    import subprocess

    root = HERE.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", rev, "a3s_nb"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def compare(n: int, repeat: int, only: set[str] | None, rev: str) -> dict:
    """Every phase with a3s_nb at ``rev`` (before) and as checked out (after), in one run:
    two worker processes on two copies of the store, each phase once per round in both,
    interleaved."""
    import tempfile

    store, _, sizes = prepare(n)
    # each tree gets its own copy of the store: their caches under .a3s_nb may differ
    twin = store.with_name(store.name + "-baseline")
    if not twin.exists():
        part = twin.with_name(twin.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        shutil.copytree(store, part, ignore=shutil.ignore_patterns(".a3s_nb"))
        part.rename(twin)
    with tempfile.TemporaryDirectory() as tmp:
        trees = [
            _Tree(f"before ({rev})", _tree_at(rev, Path(tmp)), twin, only),
            _Tree("after", HERE.parent, store, only),
        ]
        best: list[dict[str, dict]] = [{}, {}]
        try:
            for r in range(repeat):
                for phase in trees[0].phases:
                    for k, tree in enumerate(trees):
                        _keep_best(best[k], phase, tree.measure(phase))
                print(f"   round {r + 1}/{repeat} done", flush=True)
        finally:
            for tree in trees:
                tree.close()
    floors = {
        k: min((b[k] for b in best), key=lambda v: v["cpu"])
        for k in best[0]
        if k.startswith("floor.")
    }
    print()
    print(
        f"| {n:,} sessions, cpu s | floor | before | before / floor | after | after / floor "
        "| after / before | peak MiB before | peak MiB after | peak / bytes read before "
        "| after |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in best[0]:
        if name.startswith("floor."):
            continue
        parts = FRAME_PARTS[name.split(".", 1)[1]] if name.startswith("frame.") else PARTS
        fl = _floor_of(floors, parts)["cpu"]
        size = sum(sizes[p] for p in parts)
        b, a = best[0][name], best[1][name]
        print(
            f"| {name} | {fl:.3f} | {b['cpu']:.3f} | {b['cpu'] / fl:.2f} | {a['cpu']:.3f} "
            f"| {a['cpu'] / fl:.2f} | {a['cpu'] / b['cpu']:.2f} | {b['peak']:.0f} "
            f"| {a['peak']:.0f} | {b['peak'] * 2**20 / size:.2f} | {a['peak'] * 2**20 / size:.2f} |"
        )
    print(flush=True)
    return _floor_of(floors, PARTS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--repeat", type=int, default=3, help="rounds (the best is kept)")
    ap.add_argument("--only", nargs="+", help="phases besides the floor (e.g. all_frames)")
    ap.add_argument(
        "--baseline",
        metavar="REV",
        help="also run a3s_nb as of this git revision, side by side (before / after)",
    )
    ap.add_argument(
        "--mlflow",
        type=Path,
        metavar="VENV",
        help="also time MLflow's search_traces over the same sessions, with MLflow from VENV "
        "(e.g. .venv-mlflow, built by `make otel-backend`)",
    )
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    only = set(args.only) if args.only else None
    if args.worker is not None:
        worker(args.worker, only)
        return
    import pandas as pd

    import a3s_nb

    print(
        f"python {sys.version.split()[0]}, pandas {pd.__version__}, "
        f"a3s_nb {a3s_nb.__version__}, {os.cpu_count()} CPUs"
    )
    for n in args.sizes:
        if args.baseline:
            floor = compare(n, args.repeat, only, args.baseline)
        else:
            best = bench(n, args.repeat, only)
            floor = _floor_of({k: v for k, v in best.items() if k.startswith("floor.")}, PARTS)
        if args.mlflow:
            mlflow_side_by_side(DATA / f"store-{n}", floor, args.repeat, args.mlflow)


if __name__ == "__main__":
    main()
