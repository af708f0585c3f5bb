"""How fast ``a3s_nb.search`` is on a large store, against a brute-force scan and the cold
frame build, in one run (see benchmarks/README.md, "Search").

    python benchmarks/bench_search.py                 # 5,000 sessions
    python benchmarks/bench_search.py --sizes 1000 --repeat 3

The store is ``bench_frames.build_store``'s: clones of the fixture sessions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_frames import FIXTURE, build_store  # noqa: E402

#: A word in one fixture session's text, a common one, a short one, and regexes.
QUERIES = {
    "rare": ("smoke sequence", False),
    "common": ("failed to", False),
    "absent": ("zebracorn-absent", False),
    "short": ("ok", False),
    "regex_literal": (r"Failed to \w+ file", True),
    "regex_scan": (r"\d{3}-\d{4}", True),
}


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c0, time.perf_counter() - w0, out


def add_session(store: Path) -> str:
    """One more clone of a fixture session, as a save would add it."""
    src = sorted(FIXTURE.glob("*.json"))[0]
    old, new = src.stem, f"bench-new-{uuid.uuid4().hex[:12]}"
    (store / f"{new}.json").write_text(src.read_text().replace(old, new))
    runs = FIXTURE / "runs" / f"{old}.json"
    if runs.exists():
        (store / "runs" / f"{new}.json").write_text(runs.read_text().replace(old, new))
    return new


def bench(n: int, repeat: int) -> dict[str, dict[str, float]]:
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
        for name, (q, regex) in QUERIES.items():
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
        new = add_session(store)
        cpu, wall, df = timed(lambda: a3s_nb.search("zebracorn-absent", store))
        keep("one_new_session", cpu, wall)
        assert df.empty
        st = a3s_nb.FileStore(store)
        cpu, wall, _r = timed(lambda st=st, new=new: _searchindex.documents(st.load(new)))
        keep("that_session_load_and_texts", cpu, wall)
        st.delete(new)
        settle()
        cpu, wall, df = timed(lambda: a3s_nb.search("zebracorn-absent", store))
        keep("one_deleted_session", cpu, wall)
        settle()
    best["index_file_mib"] = {"size": (meta / _searchindex.INDEX_FILE).stat().st_size / 2**20}
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for n in args.sizes:
        result = bench(n, args.repeat)
        print(f"## {n} sessions (best of {args.repeat})")
        for name, m in result.items():
            print(f"{name:40} " + "  ".join(f"{k}={v:.4f}" for k, v in m.items()))
        print(json.dumps(result))


if __name__ == "__main__":
    main()
