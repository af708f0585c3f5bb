"""Benchmark: what ``%a3s_autosave on`` adds to a notebook cell.

Run by hand (needs a3s-code 3.1.0)::

    python benchmarks/bench_autosave.py [--runs 10 100] [--cells 200]

A real IPython shell holds a real a3s-code session (driven by the scripted server, tools
allowed) with N runs, and 50 other variables. In one run, per N:

  cell_off         ``x = 1`` with autosave off: the baseline cell
  cell_unchanged   ``x = 1`` with autosave on: the session did not change, so the
                   post-cell hook only scans the namespace and takes a fingerprint
  hook_unchanged   the post-cell hook alone, session unchanged
  hook_changed     the post-cell hook alone after a ``send``: it saves the session
                   (capture, secret scan, conflict check, write)
  send_off         a cell that runs ``session.send(...)`` (a chat turn), autosave off
  send_on          the same cell with autosave on (the save included)

Times are medians in milliseconds; the overheads are printed beside the baseline
measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import a3s_nb  # noqa: E402
from a3s_nb import testing  # noqa: E402
from a3s_nb.notebook.autosave import Autosave  # noqa: E402


def median_ms(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def bench(ip, a3s_code, agent, n_runs: int, cells: int, tmp: Path) -> dict[str, float]:
    ws = tmp / f"ws-{n_runs}"
    ws.mkdir()
    store = tmp / f"store-{n_runs}"
    opts = a3s_code.SessionOptions()
    opts.permission_policy = a3s_code.PermissionPolicy(default_decision="allow")
    session = agent.session(str(ws), opts)
    for i in range(n_runs):
        session.send(testing.WRITE_READ_PROMPT if i % 2 else testing.CHAT_PROMPT)
    ip.user_ns.update(session=session, testing=testing)
    ip.user_ns.update({f"var_{i}": list(range(i)) for i in range(50)})

    def cell(code: str):
        return lambda: ip.run_cell(code, store_history=False)

    out: dict[str, float] = {}
    a3s_nb.autosave(False, shell=ip)
    out["cell_off"] = median_ms(cell("x = 1"), cells)
    saver = a3s_nb.autosave(True, store=store, shell=ip)
    ip.run_cell("x = 0", store_history=False)  # first sight: the first save
    out["cell_unchanged"] = median_ms(cell("x = 1"), cells)
    out["hook_unchanged"] = median_ms(saver.after_cell, cells)

    changed = []
    hook = Autosave(lambda: ip.user_ns, store=store)
    hook.after_cell()
    for _ in range(max(5, cells // 20)):
        session.send(testing.CHAT_PROMPT)
        start = time.perf_counter()
        hook.after_cell()
        changed.append(time.perf_counter() - start)
    out["hook_changed"] = statistics.median(changed) * 1000

    a3s_nb.autosave(False, shell=ip)
    sends = max(5, cells // 20)
    out["send_off"] = median_ms(cell("_r = session.send(testing.CHAT_PROMPT)"), sends)
    a3s_nb.autosave(True, store=store, shell=ip)
    out["send_on"] = median_ms(cell("_r = session.send(testing.CHAT_PROMPT)"), sends)
    a3s_nb.autosave(False, shell=ip)
    out["messages"] = len(session.history())
    session.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--cells", type=int, default=200)
    args = parser.parse_args()

    import a3s_code
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=config)
    with testing.ScriptedLLM(testing.standard_script()) as llm, tempfile.TemporaryDirectory() as d:
        agent = a3s_code.Agent.create(llm.acl_config())
        print(f"{'runs':>5} {'msgs':>5} | {'cell off':>9} {'cell on':>9} {'overhead':>9} "
              f"| {'hook':>7} | {'hook, changed':>13} | {'send off':>9} {'send on':>9}")  # fmt: skip
        for n in args.runs:
            r = bench(ip, a3s_code, agent, n, args.cells, Path(d))
            over = r["cell_unchanged"] - r["cell_off"]
            print(
                f"{n:>5} {r['messages']:>5.0f} | {r['cell_off']:>7.3f}ms {r['cell_unchanged']:>7.3f}ms "
                f"{over:>+7.3f}ms | {r['hook_unchanged']:>5.3f}ms | {r['hook_changed']:>11.1f}ms "
                f"| {r['send_off']:>7.1f}ms {r['send_on']:>7.1f}ms"
            )


if __name__ == "__main__":
    main()
