"""Benchmark: a3s_nb frames against the JSON floor and a naive pandas baseline.

Run by hand (not part of the test suite)::

    python benchmarks/bench_frames.py                 # 1,000 and 5,000 sessions
    python benchmarks/bench_frames.py --sizes 200     # a quick look

It clones the sessions of the fixture store (written by the real a3s-code 3.1.0 SDK) with
fresh session and run ids into ``benchmarks/.data/store-<N>`` (git-ignored, reused between
runs), then times, each phase in a fresh Python process:

* ``floor``         read and ``json.loads`` every file of the store, nothing else
* ``floor_read``    the same for the files a3s_nb reads (all but ``artifacts/``)
* ``naive``         ``pandas.json_normalize`` per file, concatenated per kind
* ``all_frames``    ``a3s_nb.all_frames``: all seven frames in one pass
* ``each_frame``    the seven frame functions called one after the other
* ``sessions_cold`` ``a3s_nb.sessions()`` with no index (it builds one)
* ``sessions_warm`` ``a3s_nb.sessions()`` with the index in place (new process)
* ``session_files`` read and parse only the session documents (what a listing needs)

Peak memory is the growth of the process's peak resident set during the phase (Linux
``VmHWM``, reset through ``/proc/self/clear_refs``), so it counts NumPy and Arrow buffers
too, which ``tracemalloc`` does not see.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

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


def store_files(store: Path, *, artifacts: bool = True) -> list[Path]:
    files = [p for p in store.glob("*.json")]
    for d in FRAGMENTS:
        files += (store / d).glob("*.json")
    if artifacts:
        files += (store / "artifacts").glob("*/artifacts.json")
    return files


def store_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store_files(store))


# ============================================================================ phases


def phase_floor(store: Path, artifacts: bool = True) -> int:
    n = 0
    for path in store_files(store, artifacts=artifacts):
        json.loads(path.read_text(encoding="utf-8"))
        n += 1
    return n


def phase_session_files(store: Path) -> int:
    n = 0
    for path in store.glob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
        n += 1
    return n


def phase_naive(store: Path) -> int:
    """What a pandas user would write without a3s_nb: json_normalize each file."""
    import pandas as pd

    kinds: dict[str, list] = {
        k: [] for k in ("sessions", "messages", "traces", "runs", "events", "checks")
    }
    for path in sorted(store.glob("*.json")):
        sid = path.stem
        session = json.loads(path.read_text(encoding="utf-8"))
        kinds["sessions"].append(pd.json_normalize(session))
        if session.get("messages"):
            df = pd.json_normalize(session["messages"], record_path="content", meta=["role"])
            df["session_id"] = sid
            kinds["messages"].append(df)
        for part in FRAGMENTS:
            frag = store / part / f"{sid}.json"
            if not frag.exists():
                continue
            data = json.loads(frag.read_text(encoding="utf-8"))
            if not data:
                continue
            if part == "traces":
                df = pd.json_normalize(data)
                df["session_id"] = sid
                kinds["traces"].append(df)
            elif part == "runs":
                kinds["runs"].append(pd.json_normalize([r["snapshot"] for r in data]))
                kinds["events"].append(
                    pd.json_normalize(
                        data,
                        record_path="events",
                        meta=[["snapshot", "id"], ["snapshot", "session_id"]],
                    )
                )
            else:
                df = pd.json_normalize(
                    data, record_path="checks", meta=["subject", "status"], meta_prefix="report_"
                )
                df["session_id"] = sid
                kinds["checks"].append(df)
    frames = {k: pd.concat(v, ignore_index=True) for k, v in kinds.items() if v}
    return sum(len(df) for df in frames.values())


def phase_all_frames(store: Path) -> int:
    import a3s_nb

    frames = a3s_nb.all_frames(store, progress=False)
    return sum(len(df) for df in frames.values())


def phase_each_frame(store: Path) -> int:
    import a3s_nb

    _drop_index(store)
    total = 0
    for name in ("sessions", "messages", "traces", "runs", "run_events", "spans", "verification"):
        total += len(getattr(a3s_nb, name)(store, progress=False))
    return total


def phase_sessions_cold(store: Path) -> int:
    import a3s_nb

    _drop_index(store)
    return len(a3s_nb.sessions(store, progress=False))


def phase_sessions_warm(store: Path) -> int:
    import a3s_nb

    return len(a3s_nb.sessions(store, progress=False))


def _drop_index(store: Path) -> None:
    (store / ".a3s_nb" / "index.json").unlink(missing_ok=True)


def phase_frame(name: str):
    def run(store: Path) -> int:
        import a3s_nb

        return len(getattr(a3s_nb, name)(store, progress=False))

    return run


FRAME_NAMES = ("sessions", "messages", "traces", "runs", "run_events", "spans", "verification")

PHASES = {
    "floor": phase_floor,
    "floor_read": lambda store: phase_floor(store, artifacts=False),
    "session_files": phase_session_files,
    "naive": phase_naive,
    "all_frames": phase_all_frames,
    "each_frame": phase_each_frame,
    "sessions_cold": phase_sessions_cold,
    "sessions_warm": phase_sessions_warm,
    **{f"frame_{name}": phase_frame(name) for name in FRAME_NAMES if name != "sessions"},
}


# ============================================================================ measuring


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def run_phase_here(name: str, store: Path) -> dict:
    """Run one phase in this process and measure it (called in a child process)."""
    import pandas  # noqa: F401 - import costs are not part of any phase

    import a3s_nb

    if name == "sessions_warm":  # the index must exist: build it outside the timing
        a3s_nb.sessions(store, progress=False)
        time.sleep(0.01)
    if name == "sessions_cold":
        _drop_index(store)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    rss0 = _status_kib("VmRSS")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    rows = PHASES[name](store)
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = _status_kib("VmHWM")
    return {
        "phase": name,
        "seconds": seconds,
        "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "rows": rows,
        "peak_mib": (peak - rss0) / 1024,
        "peak_exact": reset,
    }


def run_phase(name: str, store: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, "--store", str(store)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(n: int, repeat: int, naive_repeat: int, phases: list[str]) -> list[dict]:
    t = time.perf_counter()
    store = build_store(n)
    size = store_bytes(store)
    print(
        f"\n== {n:,} sessions: {size / 2**20:,.0f} MiB in {len(store_files(store)):,} files "
        f"({time.perf_counter() - t:.1f} s to prepare)",
        flush=True,
    )
    results = []
    for name in phases:
        reps = naive_repeat if name == "naive" else repeat
        runs = [run_phase(name, store) for _ in range(reps)]
        best = min(runs, key=lambda r: r["cpu"])
        best["seconds"] = min(r["seconds"] for r in runs)
        best["peak_mib"] = max(r["peak_mib"] for r in runs)
        best["repeat"] = reps
        results.append(best)
        print(
            f"   {name:<18} wall {best['seconds']:8.3f} s  cpu {best['cpu']:8.3f} s  "
            f"peak {best['peak_mib']:8.1f} MiB  ({best['rows']:,} rows, best of {reps})",
            flush=True,
        )
    by = {r["phase"]: r for r in results}
    floor = by.get("floor")
    print()
    print(f"| {n:,} sessions | wall s | cpu s | cpu / floor cpu | peak MiB | peak / store size |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = f"{r['cpu'] / floor['cpu']:.2f}" if floor else "-"
        print(
            f"| {r['phase']} | {r['seconds']:.2f} | {r['cpu']:.2f} | {ratio} | "
            f"{r['peak_mib']:.0f} | {r['peak_mib'] * 2**20 / size:.2f} |"
        )
    print()

    def ratio(a: str, b: str) -> None:
        if a in by and b in by:
            print(
                f"{a} / {b}: cpu {by[a]['cpu'] / by[b]['cpu']:.2f}x, "
                f"wall {by[a]['seconds'] / by[b]['seconds']:.2f}x"
            )

    ratio("all_frames", "floor")
    ratio("all_frames", "floor_read")
    ratio("naive", "all_frames")
    ratio("naive", "each_frame")
    ratio("sessions_cold", "session_files")
    ratio("sessions_warm", "session_files")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--repeat", type=int, default=3, help="runs per phase (best is kept)")
    ap.add_argument("--naive-repeat", type=int, default=1)
    ap.add_argument("--phases", nargs="+", default=list(PHASES), choices=list(PHASES))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_phase_here(args.child, Path(args.store))))
        return
    import pandas as pd

    import a3s_nb

    print(
        f"python {sys.version.split()[0]}, pandas {pd.__version__}, "
        f"a3s_nb {a3s_nb.__version__}, {os.cpu_count()} CPUs"
    )
    for n in args.sizes:
        bench(n, args.repeat, args.naive_repeat, args.phases)


if __name__ == "__main__":
    main()
