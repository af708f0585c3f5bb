"""Benchmark: the secret scan of a long session, before and after, full and incremental.

Run by hand::

    python benchmarks/bench_secrets.py [--messages 1000] [--repeat 7]

Builds a long session from the fixture sessions written by the real a3s-code SDK (their
messages, runs and traces cloned with fresh ids until there are ``--messages`` messages:
about 1.9 MB on disk for 1,000), then times, interleaved, best of ``--repeat``:

  old_scan        the scanner as it was (benchmarks/_secrets_baseline.py): every string
                  of every file walked and matched on every save
  new_full        ``scan(parts, cache=False)``: the first scan in a process
  new_rescan      ``scan(parts)`` again, nothing changed (every unit found in the cache)
  new_append      ``scan(parts)`` after one more prompt (4 messages, a run, its traces)
  *_std           the same with the standard library's JSON encoder (no orjson, msgspec)
  old_redact / new_redact_full / new_redact_append   the same for ``redact``

Ratios are against ``old_scan`` measured in the same run.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _secrets_baseline as old  # noqa: E402

import a3s_nb  # noqa: E402
from a3s_nb import secrets as new  # noqa: E402
from a3s_nb.sdk.capture import bundle_to_parts  # noqa: E402

FIXTURE = HERE.parent / "tests" / "fixtures" / "a3s-code-3.1.0"


def _clone(src: dict, tag: str) -> dict:
    blob = json.dumps({"m": src["session"]["messages"], "r": src["runs"], "t": src["traces"]})
    blob = blob.replace("run-", f"run{tag}-").replace("call_", f"call{tag}_")
    return json.loads(blob)


def long_session(messages: int) -> tuple[dict, list[dict]]:
    """A session of ``messages`` messages cloned from the fixtures, and the sources."""
    store = a3s_nb.FileStore(FIXTURE)
    # the session with a 100 KB artifact of one letter is left out: it is not typical
    sources = [bundle_to_parts(store.load(s)) for s in store.list() if not s.startswith("4287")]
    parts = copy.deepcopy(sources[0])
    parts["session"]["messages"], parts["runs"], parts["traces"] = [], [], []
    i = 0
    while len(parts["session"]["messages"]) < messages:
        c = _clone(sources[i % len(sources)], f"-{i:04d}")
        parts["session"]["messages"] += c["m"]
        parts["runs"] += c["r"]
        parts["traces"] += c["t"]
        i += 1
    del parts["session"]["messages"][messages:]
    return parts, sources


def one_more_prompt(parts: dict, sources: list[dict], n: int) -> dict:
    """``parts`` after one more prompt: 4 messages, a run and its traces."""
    src = sources[1]
    c = _clone(src, f"-x{n:03d}")
    out = dict(parts)
    out["session"] = dict(parts["session"])
    out["session"]["messages"] = parts["session"]["messages"] + c["m"][:4]
    out["runs"] = parts["runs"] + c["r"][:1]
    out["traces"] = parts["traces"] + c["t"][:2]
    return out


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    parts, sources = long_session(args.messages)
    size = sum(len(json.dumps(v, indent=2)) for v in parts.values())
    print(
        f"session: {len(parts['session']['messages'])} messages, {len(parts['runs'])} runs, "
        f"{len(parts['traces'])} traces, {size / 1e6:.2f} MB as written (indent=2)"
    )
    print(f"JSON encoders: {', '.join(new.ENCODERS)} (the first is used)\n")

    # the same findings, old and new, on this (clean) session and with one secret
    assert old.scan(parts, env={}) == new.scan(parts, env={}, cache=False) == []

    counter = iter(range(10**6))

    def prime_and(fn):
        """Fill the cache with ``parts`` (not timed), then time ``fn``."""

        def run():
            new.clear_cache()
            new.scan(parts, env={})
            return timed(fn)

        return run

    def appended(fn_name):
        def run():
            new.clear_cache()
            new.scan(parts, env={})
            grown = one_more_prompt(parts, sources, next(counter))
            fn = getattr(new, fn_name)
            return timed(lambda: fn(grown, env={}))

        return run

    def std(run):
        def wrapped():
            new._set_encoder("json")
            try:
                return run()
            finally:
                new._set_encoder(next(iter(new.ENCODERS)))

        return wrapped

    phases = {
        "old_scan": lambda: timed(lambda: old.scan(parts, env={})),
        "new_full": lambda: timed(lambda: new.scan(parts, env={}, cache=False)),
        "new_rescan": prime_and(lambda: new.scan(parts, env={})),
        "new_append": appended("scan"),
        "new_full_std": std(lambda: timed(lambda: new.scan(parts, env={}, cache=False))),
        "new_rescan_std": std(prime_and(lambda: new.scan(parts, env={}))),
        "new_append_std": std(appended("scan")),
        "old_redact": lambda: timed(lambda: old.redact(parts, env={})),
        "new_redact_full": lambda: timed(lambda: new.redact(parts, env={}, cache=False)),
        "new_redact_append": appended("redact"),
    }
    best = {k: float("inf") for k in phases}
    for _ in range(args.repeat):
        for name, run in phases.items():
            best[name] = min(best[name], run())
    base = best["old_scan"]
    print(f"{'phase':<20}{'best ms':>10}{'vs old_scan':>14}")
    for name, ms in best.items():
        print(f"{name:<20}{ms:>10.2f}{ms / base:>13.3f}x")


if __name__ == "__main__":
    main()
