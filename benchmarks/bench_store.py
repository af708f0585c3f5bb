"""Benchmark: saving and loading one session, a3s_nb against the real a3s-code SDK.

Run by hand (needs a3s-code 3.1.0)::

    python benchmarks/bench_store.py [--rounds 20]

For each of the eight fixture sessions (written by the real SDK), in one run:

  sdk_resume     a3s-code's own ``Agent.resume_session`` from the store
  sdk_save       a3s-code's own ``session.save()`` of that resumed session
  nb_load        ``Store.load`` (validated pydantic models of every file)
  nb_save        ``Store.save`` (every file atomic: temp, fsync, rename, dir fsync; locked)
  nb_save_api    ``a3s_nb.save(session)``, what ``%a3s_save`` does: capture through the
                 SDK's read methods, scan for secrets, validate, then ``Store.save``

Times are medians over sessions x rounds, in milliseconds, with ratios against the SDK's
own save/resume measured in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import a3s_nb  # noqa: E402
from a3s_nb import testing  # noqa: E402
from a3s_nb.sdk import live  # noqa: E402

FIXTURE = HERE.parent / "tests" / "fixtures" / "a3s-code-3.1.0"


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return (time.perf_counter() - start) * 1000, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    times: dict[str, list[float]] = {
        k: [] for k in ("sdk_resume", "sdk_save", "nb_load", "nb_save", "nb_save_api")
    }
    work = Path(tempfile.mkdtemp(prefix="a3s_nb_bench_"))
    try:
        sdk_dir, nb_dir, api_dir = work / "sdk", work / "nb", work / "api"
        shutil.copytree(FIXTURE, sdk_dir)
        workspace = work / "ws"
        workspace.mkdir()
        source = a3s_nb.open_store(sdk_dir)
        ids = source.list()
        # the recorded workspaces are another machine's: point them at one that exists
        for sid in ids:
            bundle = source.load(sid)
            bundle.session.config.workspace = str(workspace)
            source.save(bundle)
        nb = a3s_nb.open_store(nb_dir)
        with testing.ScriptedLLM(models=("fake-model", "fake-model-large")) as llm:
            agent = llm.agent()
            for _ in range(args.rounds):
                for sid in ids:
                    ms, session = timed(lambda sid=sid: live.resume_session(agent, sid, sdk_dir))
                    times["sdk_resume"].append(ms)
                    times["sdk_save"].append(timed(session.save)[0])
                    ms, bundle = timed(lambda sid=sid: source.load(sid))
                    times["nb_load"].append(ms)
                    times["nb_save"].append(timed(lambda b=bundle: nb.save(b))[0])
                    times["nb_save_api"].append(
                        timed(lambda s=session: a3s_nb.save(s, store=api_dir))[0]
                    )
                    session.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(times["nb_save"])
    print(f"a3s_nb {a3s_nb.__version__}, {len(ids)} fixture sessions x {args.rounds} rounds")
    print(f"({n} samples each; medians)\n")
    print("| operation | median ms | p90 ms | vs SDK save | vs SDK resume |")
    print("|---|---:|---:|---:|---:|")
    for key, values in times.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        print(
            f"| {key} | {med[key]:.2f} | {p90:.2f} | {med[key] / med['sdk_save']:.2f}x "
            f"| {med[key] / med['sdk_resume']:.2f}x |"
        )


if __name__ == "__main__":
    main()
