"""How fast ``a3s_nb.search`` is on a large store, against a brute-force scan and the cold
frame build, in one run (see benchmarks/README.md, "Search").

    python benchmarks/bench_search.py                 # 5,000 sessions
    python benchmarks/bench_search.py --sizes 1000 --repeat 3
    python benchmarks/bench_search.py --repeat 2 --queries rare absent

The store is ``bench_frames.build_store``'s: clones of the fixture sessions.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_frames import FIXTURE, build_store, stat_every_file, unwatched  # noqa: E402

#: A word in one fixture session's text, a common one, a short one, and regexes.
QUERIES = {
    "rare": ("smoke sequence", False),
    "common": ("failed to", False),
    "absent": ("zebracorn-absent", False),
    "short": ("ok", False),
    "regex_literal": (r"Failed to \w+ file", True),
    "regex_scan": (r"\d{3}-\d{4}", True),
}


def _cpu() -> float:
    """CPU seconds of this process and of its children (a cold frame build may use
    worker processes)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    c0, w0 = _cpu(), time.perf_counter()
    out = fn()
    return _cpu() - c0, time.perf_counter() - w0, out


def session_cost(store: Path, sid: str) -> int:
    """What one session costs on its own: ``Store.load``, its texts, and their rows in an
    index of its own (in memory)."""
    import sqlite3

    from a3s_nb import FileStore
    from a3s_nb.frames import _searchindex

    docs = _searchindex.documents(FileStore(store).load(sid))
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for sql in _searchindex._SCHEMA:
        conn.execute(sql)
    index = _searchindex.SearchIndex.__new__(_searchindex.SearchIndex)
    index.conn = conn
    index._replace(sid, sid, docs)
    conn.close()
    return len(docs)


def add_session(store: Path) -> str:
    """One more clone of a fixture session, as a save would add it."""
    src = sorted(FIXTURE.glob("*.json"))[0]
    old, new = src.stem, f"bench-new-{uuid.uuid4().hex[:12]}"
    (store / f"{new}.json").write_text(src.read_text().replace(old, new))
    runs = FIXTURE / "runs" / f"{old}.json"
    if runs.exists():
        (store / "runs" / f"{new}.json").write_text(runs.read_text().replace(old, new))
    return new


def bench(n: int, repeat: int, queries: list[str]) -> dict[str, dict[str, float]]:
    import a3s_nb
    from a3s_nb.frames import _searchindex
    from a3s_nb.frames import search as textsearch

    store = build_store(n)
    meta = store / ".a3s_nb"
    best: dict[str, dict[str, float]] = {}

    def keep(name: str, cpu: float, wall: float) -> None:
        old = best.get(name)
        if old is None or wall < old["wall"]:
            best[name] = {"cpu": cpu, "wall": wall}

    def settle() -> None:
        time.sleep(2.1)  # out of the racy window: the next call trusts what it wrote

    for _ in range(repeat):
        shutil.rmtree(meta, ignore_errors=True)
        cpu, wall, _r = timed(lambda: a3s_nb.all_frames(store, progress=False))
        keep("frames_cold", cpu, wall)
        shutil.rmtree(meta, ignore_errors=True)
        cpu, wall, _r = timed(lambda: a3s_nb.search("zebracorn-absent", store))
        keep("index_cold", cpu, wall)
        (meta / _searchindex.INDEX_FILE).unlink()
        cpu, wall, _r = timed(lambda: a3s_nb.search("zebracorn-absent", store))
        keep("index_build_checked", cpu, wall)  # load verdicts cached: the index alone
        settle()
        a3s_nb.search("warm", store)
        for name, (q, regex) in ((k, QUERIES[k]) for k in queries):
            cpu, wall, df = timed(lambda q=q, regex=regex: a3s_nb.search(q, store, regex=regex))
            keep(f"query_warm.{name}", cpu, wall)
            best[f"query_warm.{name}"]["hits"] = len(df)
            index = _searchindex.SearchIndex(a3s_nb.FileStore(store))
            index.conn = _searchindex._open_existing(index.path)
            matcher = textsearch.Matcher(q, regex)

            def only_index(index=index, matcher=matcher) -> int:
                return sum(
                    1 for r in index.rows(matcher.grams(), None) if matcher.span(r[-1]) is not None
                )

            cpu, wall, _r = timed(only_index)
            index.close()
            keep(f"query_index_only.{name}", cpu, wall)
            st = a3s_nb.FileStore(store)
            cpu, wall, _r = timed(
                lambda st=st, matcher=matcher: textsearch._brute_force(st, matcher, None)
            )
            keep(f"brute_force.{name}", cpu, wall)
        cpu, wall, _r = timed(lambda: stat_every_file(store))
        keep("stat_every_file", cpu, wall)
        cpu, wall, _r = timed(lambda: a3s_nb.search("zebracorn-absent", store))
        keep("query_warm_before_change", cpu, wall)
        # the same call stat'ing every file
        cpu, wall, _r = timed(unwatched(lambda: a3s_nb.search("zebracorn-absent", store)))
        keep("query_warm_unwatched", cpu, wall)
        new = add_session(store)
        cpu, wall, df = timed(lambda: a3s_nb.search("zebracorn-absent", store))
        keep("one_new_session", cpu, wall)
        assert df.empty
        cpu, wall, _r = timed(lambda new=new: session_cost(store, new))
        keep("that_session_load_and_index", cpu, wall)
        settle()
        a3s_nb.search("zebracorn-absent", store)
        a3s_nb.FileStore(store).delete(new)
        cpu, wall, df = timed(lambda: a3s_nb.search("zebracorn-absent", store))
        keep("one_deleted_session", cpu, wall)
        settle()
    best["index_file_mib"] = {"size": (meta / _searchindex.INDEX_FILE).stat().st_size / 2**20}
    return best


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def summary(r: dict[str, dict[str, float]]) -> list[str]:
    """Each target of issue 19 beside its baseline from the same run (CPU s, then wall)."""
    lines = [f"{'target':52} {'measured':>17} {'baseline':>17} {'ratio':>7}"]

    def line(what: str, got: str, base: str | float, *, fixed: bool = False) -> None:
        g = r[got]
        b = {"cpu": base, "wall": base} if fixed else r[str(base)]
        lines.append(
            f"{what:52} {g['cpu']:8.4f} {g['wall']:8.4f} {b['cpu']:8.4f} {b['wall']:8.4f} "
            f"{_ratio(g['wall'], b['wall']):>7}"
        )

    for name in (k for k in QUERIES if f"query_warm.{k}" in r):
        line(f"warm {name}: whole call vs 50 ms", f"query_warm.{name}", 0.05, fixed=True)
        line(f"warm {name}: whole call vs brute force", f"query_warm.{name}", f"brute_force.{name}")
    line(
        "warm, no change (absent): vs the same without the watch",
        "query_warm_before_change",
        "query_warm_unwatched",
    )
    line(
        "warm, no change (absent): vs a stat of every file",
        "query_warm_before_change",
        "stat_every_file",
    )
    line("index from nothing vs cold all_frames", "index_cold", "frames_cold")
    new, warm = r["one_new_session"], r["query_warm_before_change"]
    r["one_new_session_over_warm"] = {k: new[k] - warm[k] for k in ("cpu", "wall")}
    line(
        "one new session, then a search vs warm search",
        "one_new_session",
        "query_warm_before_change",
    )
    line(
        "... its cost over the warm search vs that session's load + index",
        "one_new_session_over_warm",
        "that_session_load_and_index",
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--queries", nargs="+", choices=list(QUERIES), default=list(QUERIES), metavar="NAME"
    )
    args = parser.parse_args()
    for n in args.sizes:
        result = bench(n, args.repeat, args.queries)
        print(f"## {n} sessions (best of {args.repeat}; seconds, CPU then wall)")
        for name, m in result.items():
            print(f"{name:40} " + "  ".join(f"{k}={v:.4f}" for k, v in m.items()))
        print()
        print("\n".join(summary(result)))
        print(json.dumps(result))


if __name__ == "__main__":
    main()
