"""Benchmark: saving a long live session, ``a3s_nb.save`` against the SDK's ``session.save()``.

Run by hand (needs a3s-code 3.1.0; about a minute, two with a baseline)::

    python benchmarks/bench_save.py [--prompts 250] [--rounds 15] [--baseline REV]

The real SDK runs ``--prompts`` prompts against the scripted LLM server, each with one
``bash`` tool call (250 prompts: 1,000 messages, about 2 MB on disk). Then, in one run:

  unchanged     the same session saved again and again: the SDK's ``session.save()`` and
                ``a3s_nb.save(session)`` one after the other, rotating which goes first
  first save    ``a3s_nb.save`` with every in-process cache emptied first (what the first
                save of a kernel costs; the SDK's save has no such state)
  one more send one more prompt, then every save; repeated ``--rounds`` times

``--baseline REV`` also times a3s_nb as it was at git revision ``REV`` of this repository
(extracted with ``git archive`` and imported under another package name), in the same
rounds and rotation: before and after side by side, under the same load.

Each a3s_nb is also timed step by step, the way ``api.save`` runs them (with the steps
function of the bench script of its own revision), into a store of its own saved once per
round:

  previous   read the saved session document (not its messages) for created_at, config
  capture    read the live session through the SDK's read methods
  encode     validate what changed and serialise every file (a3s_nb.store.serde)
  scan       the secret scan of what changed
  check      the conflict check (loads what is stored only if this session did not write it)
  write      ``Store`` commit: temp files, fsync, rename, directory fsync (the lock is held)
  count      the tool calls, failed and refused ones, for the report line

Times are in milliseconds: best and median, with the median's ratio to the SDK's save
measured in the same rounds.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import a3s_nb  # noqa: E402
from a3s_nb import api, testing  # noqa: E402
from a3s_nb.sdk import capture, live  # noqa: E402
from a3s_nb.store import serde  # noqa: E402

SESSION_ID = "long-session"
STEPS = ("previous", "capture", "encode", "scan", "check", "write", "count")
BASELINE_PACKAGE = "a3s_nb_baseline"


def script() -> list[testing.Rule]:
    step = testing.Reply(
        text="Running it.",
        tool_calls=(testing.ToolCall("bash", {"command": "seq -s ' ' 1 100"}),),
    )
    return [
        testing.Rule(
            regex=r"^Step \d+",
            name="step",
            replies=(step, testing.Reply(text="Done: the numbers are printed.")),
        )
    ]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return (time.perf_counter() - start) * 1000, value


def forget_caches() -> None:
    """Empty a3s_nb's in-process caches, as in a new kernel."""
    serde.forget()
    capture._EVENTS_KEPT.clear()
    clear = getattr(a3s_nb.secrets, "clear_cache", None)
    if callable(clear):
        clear()


def steps(session: Any, store: a3s_nb.Store) -> dict[str, float]:
    """``a3s_nb.save``'s pipeline, step by step (as in ``api.save``)."""
    out: dict[str, float] = {}
    encoder = serde.encoder_for((api._store_key(store), SESSION_ID))
    out["previous"], (previous, _) = timed(lambda: api._previous(store, SESSION_ID, encoder))
    run_keys: list[bytes] = []
    out["capture"], parts = timed(
        lambda: capture.capture_parts(
            session, session_id=SESSION_ID, previous=previous, run_keys=run_keys
        )
    )
    out["encode"], encoded = timed(lambda: encoder.encode(parts, run_keys=run_keys))
    out["scan"], _ = timed(lambda: api._scan(parts, encoded, None, redact=False))
    data = {part: e.data for part, e in encoded.items()}
    mark = api._mark(store, SESSION_ID, session)
    with store.lock():
        out["check"], _ = timed(lambda: api._check(store, SESSION_ID, parts, mark, check=True))
        out["write"], _ = timed(lambda: store._save_texts(SESSION_ID, data))
        api._wrote(mark, data["session"])
    encoder.wrote(encoded["session"].data, encoded["session"].head)
    out["count"], _ = timed(lambda: capture.tool_call_counts(parts["session"]["messages"]))
    return out


# ---------------------------------------------------------------------------- the baseline


def load_baseline(rev: str, into: Path) -> types.ModuleType:
    """This benchmark as it was at ``rev``, running a3s_nb as it was at ``rev``.

    Both are extracted from git into ``into``; the package is imported as
    ``a3s_nb_baseline`` (a3s_nb imports itself relatively), and the old script's text is
    run with that name in place of ``a3s_nb``, so its ``steps`` and ``forget_caches`` time
    the old pipeline.
    """
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", rev, "a3s_nb", "benchmarks/bench_save.py"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "a3s_nb").rename(into / BASELINE_PACKAGE)
    sys.path.insert(0, str(into))
    importlib.import_module(BASELINE_PACKAGE)
    source = (into / "benchmarks" / "bench_save.py").read_text()
    source = source.replace("sys.path.insert(0, str(HERE.parent))", "")
    source = source.replace("a3s_nb", BASELINE_PACKAGE)
    bench = types.ModuleType("bench_save_baseline")
    bench.__file__ = str(into / "benchmarks" / "bench_save.py")
    exec(compile(source, bench.__file__, "exec"), bench.__dict__)
    return bench


# ------------------------------------------------------------------------------ the report


def row(name: str, values: list[float], sdk: list[float] | None) -> str:
    best, med = min(values), statistics.median(values)
    ratio = f"{med / statistics.median(sdk):.2f}x" if sdk else ""
    return f"| {name} | {best:.2f} | {med:.2f} | {ratio} |"


def step_row(name: str, before: list[float] | None, after: list[float]) -> str:
    def cell(values: list[float] | None) -> str:
        if not values:
            return "-"
        return f"{min(values):.2f} / {statistics.median(values):.2f}"

    return f"| {name} | {cell(before)} | {cell(after)} |"


def step_sums(t: dict[str, list[float]], prefix: str) -> list[float] | None:
    """The sum of the steps of each round (None without steps)."""
    columns = [v for k, v in t.items() if k.startswith(f"{prefix} step ")]
    return [sum(v) for v in zip(*columns, strict=True)] if columns else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--baseline", metavar="REV", help="also time a3s_nb as of this git revision"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="a3s_nb_bench_save_"))
    t: dict[str, list[float]] = {}

    def add(key: str, ms: float) -> None:
        t.setdefault(key, []).append(ms)

    try:
        base = load_baseline(args.baseline, work / "baseline") if args.baseline else None
        ws = work / "ws"
        ws.mkdir()
        sdk_dir = work / "sdk"
        with testing.ScriptedLLM(script(), models=("fake-model",)) as llm:
            agent = llm.agent()
            session = live.open_session(agent, ws, store_dir=sdk_dir, session_id=SESSION_ID)
            ms, _ = timed(
                lambda: [session.send(f"Step {i}: print the numbers") for i in range(args.prompts)]
            )
            print(f"built the session: {args.prompts} prompts in {ms / 1000:.1f} s")
            session.save()

            # who saves: name -> (save, forget its caches, its steps, its steps' store)
            who: dict[str, tuple[Callable[[], Any], Callable[[], None] | None, Any, Any]] = {}
            who["sdk"] = (session.save, None, None, None)
            versions = [("nb", a3s_nb, sys.modules[__name__])]
            if base is not None:
                versions.append(("base", sys.modules[BASELINE_PACKAGE], base))
            for key, package, bench in versions:
                store_dir = work / key
                steps_store = package.open_store(work / f"{key}-steps")
                package.save(session, store=store_dir)
                package.save(session, store=steps_store)
                who[key] = (
                    lambda package=package, d=store_dir: package.save(session, store=d),
                    bench.forget_caches,
                    bench.steps,
                    steps_store,
                )
            size = sum(p.stat().st_size for p in sdk_dir.rglob("*.json"))
            n_messages = len(session.history())
            names = list(who)

            def one_round(case: str, i: int, *, forget: bool = False) -> None:
                order = names[i % len(names) :] + names[: i % len(names)]
                for key in order:
                    fn, forget_caches_of, _, _ = who[key]
                    if forget and forget_caches_of is not None:
                        forget_caches_of()
                    add(f"{case} {key}", timed(fn)[0])
                for key in order:
                    _, forget_caches_of, steps_of, steps_store = who[key]
                    if steps_of is None:
                        continue
                    if forget:
                        forget_caches_of()
                    for step, ms in steps_of(session, steps_store).items():
                        add(f"{case} {key} step {step}", ms)

            for i in range(args.rounds):  # the unchanged session, again and again
                one_round("unchanged", i)
            for i in range(max(3, args.rounds // 3)):  # a new kernel's first save
                one_round("first", i, forget=True)
            for i in range(args.rounds):  # one more prompt before each round of saves
                session.send(f"Step {args.prompts + i}: print the numbers")
                one_round("send", i)
            session.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"a3s_nb {a3s_nb.__version__}: a live session of {n_messages} messages "
        f"({args.prompts} prompts with a tool call each), {size / 1e6:.2f} MB on disk; "
        f"{args.rounds} rounds, load average {load:.1f} at the end\n"
    )
    label = {"sdk": "SDK `session.save()`", "nb": "`a3s_nb.save`"}
    if args.baseline:
        label["base"] = f"`a3s_nb.save` at {args.baseline}"
    print("| save | best ms | median ms | median vs SDK save |")
    print("|---|---:|---:|---:|")
    for case, what in (
        ("unchanged", "unchanged session"),
        ("first", "first save in a kernel"),
        ("send", "after one more send"),
    ):
        for key in names:
            print(row(f"{label[key]}, {what}", t[f"{case} {key}"], t[f"{case} sdk"]))
    for case, what in (
        ("send", "after one more send"),
        ("unchanged", "unchanged session"),
        ("first", "first save in a kernel"),
    ):
        print(f"\nsteps, {what}: best / median ms")
        print(f"| step | {'before' if args.baseline else '-'} | after |")
        print("|---|---:|---:|")
        for step in STEPS:
            before = t.get(f"{case} base step {step}")
            print(step_row(step, before, t[f"{case} nb step {step}"]))
        print(
            step_row("sum of the steps", step_sums(t, f"{case} base"), step_sums(t, f"{case} nb"))
        )


if __name__ == "__main__":
    main()
