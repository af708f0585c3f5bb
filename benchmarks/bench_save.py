"""Benchmark: saving a long live session, ``a3s_nb.save`` against the SDK's ``session.save()``.

Run by hand (needs a3s-code 3.1.0; about a minute)::

    python benchmarks/bench_save.py [--prompts 250] [--rounds 15]

The real SDK runs ``--prompts`` prompts against the scripted LLM server, each with one
``bash`` tool call (250 prompts: 1,000 messages, about 2 MB on disk). Then, in one run:

  unchanged     the same session saved again and again: the SDK's ``session.save()`` and
                ``a3s_nb.save(session)`` one after the other, alternating which goes first
  first save    ``a3s_nb.save`` with every in-process cache emptied first (what the first
                save of a kernel costs; the SDK's save has no such state)
  one more send one more prompt, then both saves; repeated ``--rounds`` times

and ``a3s_nb.save``'s steps, timed one by one the way ``api.save`` runs them:

  previous   read the saved session document (not its messages) for created_at, config
  capture    read the live session through the SDK's read methods
  encode     validate what changed and serialise every file (a3s_nb.serde)
  scan       the secret scan of what changed
  check      the conflict check (loads what is stored only if this session did not write it)
  write      ``Store`` commit: temp files, fsync, rename, directory fsync (the lock is held)
  count      the tool calls, failed and refused ones, for the report line

Times are in milliseconds: best and median, with the median's ratio to the SDK's save
measured in the same rounds.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import a3s_nb  # noqa: E402
from a3s_nb import api, capture, live, serde, testing  # noqa: E402

SESSION_ID = "long-session"
STEPS = ("previous", "capture", "encode", "scan", "check", "write", "count")


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
    out["capture"], parts = timed(
        lambda: capture.capture_parts(session, session_id=SESSION_ID, previous=previous)
    )
    out["encode"], encoded = timed(lambda: encoder.encode(parts))
    out["scan"], _ = timed(lambda: api._scan(encoder, parts, encoded, None, redact=False))
    data = {part: e.data for part, e in encoded.items()}
    mark = api._mark(store, SESSION_ID, session)
    with store.lock():
        out["check"], _ = timed(lambda: api._check(store, SESSION_ID, parts, mark, check=True))
        out["write"], _ = timed(lambda: store._save_texts(SESSION_ID, data))
        api._wrote(mark, data["session"])
    encoder.wrote(encoded["session"].data, encoded["session"].head)
    out["count"], _ = timed(lambda: capture.tool_call_counts(parts["session"]["messages"]))
    return out


def row(name: str, values: list[float], sdk: list[float] | None) -> str:
    best, med = min(values), statistics.median(values)
    ratio = f"{med / statistics.median(sdk):.2f}x" if sdk else ""
    return f"| {name} | {best:.2f} | {med:.2f} | {ratio} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="a3s_nb_bench_save_"))
    t: dict[str, list[float]] = {}

    def add(key: str, ms: float) -> None:
        t.setdefault(key, []).append(ms)

    try:
        ws = work / "ws"
        ws.mkdir()
        sdk_dir, nb_dir, steps_dir = work / "sdk", work / "nb", work / "steps"
        with testing.ScriptedLLM(script(), models=("fake-model",)) as llm:
            agent = llm.agent()
            session = live.open_session(agent, ws, store_dir=sdk_dir, session_id=SESSION_ID)
            ms, _ = timed(
                lambda: [session.send(f"Step {i}: print the numbers") for i in range(args.prompts)]
            )
            print(f"built the session: {args.prompts} prompts in {ms / 1000:.1f} s")
            session.save()
            a3s_nb.save(session, store=nb_dir)
            steps_store = a3s_nb.open_store(steps_dir)
            a3s_nb.save(session, store=steps_store)
            size = sum(p.stat().st_size for p in sdk_dir.rglob("*.json"))
            n_messages = len(session.history())
            nb = lambda: a3s_nb.save(session, store=nb_dir)  # noqa: E731

            for i in range(args.rounds):  # the unchanged session, again and again
                pair = [("sdk", session.save), ("nb", nb)]
                for key, fn in pair if i % 2 else reversed(pair):
                    add(f"unchanged {key}", timed(fn)[0])
                for key, ms in steps(session, steps_store).items():
                    add(f"unchanged step {key}", ms)
            for _ in range(max(3, args.rounds // 3)):  # a new kernel's first save
                add("first sdk", timed(session.save)[0])
                forget_caches()
                add("first nb", timed(nb)[0])
                forget_caches()
                for key, ms in steps(session, steps_store).items():
                    add(f"first step {key}", ms)
            for i in range(args.rounds):  # one more prompt before each save
                session.send(f"Step {args.prompts + 2 * i}: print the numbers")
                pair = [("sdk", session.save), ("nb", nb)]
                for key, fn in pair if i % 2 else reversed(pair):
                    add(f"send {key}", timed(fn)[0])
                session.send(f"Step {args.prompts + 2 * i + 1}: print the numbers")
                add("send sdk", timed(session.save)[0])
                for key, ms in steps(session, steps_store).items():
                    add(f"send step {key}", ms)
            session.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"a3s_nb {a3s_nb.__version__}: a live session of {n_messages} messages "
        f"({args.prompts} prompts with a tool call each), {size / 1e6:.2f} MB on disk\n"
    )
    print("| save | best ms | median ms | median vs SDK save |")
    print("|---|---:|---:|---:|")
    for case, label in (
        ("unchanged", "unchanged session"),
        ("first", "first save in a kernel"),
        ("send", "after one more send"),
    ):
        print(row(f"SDK `session.save()`, {label}", t[f"{case} sdk"], t[f"{case} sdk"]))
        print(row(f"`a3s_nb.save`, {label}", t[f"{case} nb"], t[f"{case} sdk"]))
        for step in STEPS:
            print(row(f"&nbsp;&nbsp;step {step}", t[f"{case} step {step}"], t[f"{case} sdk"]))


if __name__ == "__main__":
    main()
