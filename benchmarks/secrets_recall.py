"""Recall and false positives of the secret scanner, before and after, per place.

Run by hand::

    python benchmarks/secrets_recall.py [--kinds]

Plants every secret of ``tests/secret_corpus.py`` in each place a3s-code writes text to
(a prompt, tool output, an artifact, run events split across two streamed deltas, an
object key), in a session written by the real SDK, and counts for the old scanner
(benchmarks/_secrets_baseline.py) and the current one:

  found     the scan reports a secret at every path where it was planted
  removed   after ``redact`` no 10-character piece of the secret is left in any file
            the store writes (or, for the old scanner, in the redacted JSON)

and how many benign strings, planted the same way, are flagged anywhere. ``--kinds``
also prints the kinds each scanner misses. ``--code N`` also scans N source and Markdown
files of the installed packages (site-packages), each as one tool output, and counts what
each scanner flags there: real code that names secrets without holding one.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _secrets_baseline as old  # noqa: E402

from a3s_nb import FileStore  # noqa: E402
from a3s_nb import secrets as new  # noqa: E402
from a3s_nb.sdk.capture import bundle_from_parts  # noqa: E402
from tests.secret_corpus import BENIGN, PLACES, PLANTED, load_parts, plant  # noqa: E402


def _strings(value, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            out.append(str(k))
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def _left(secret: str, text: str) -> bool:
    n = 10
    pieces = [secret] if len(secret) <= n else [secret[i : i + n] for i in range(len(secret) - n)]
    return any(p in text for p in pieces if "\n" not in p)


def written(parts: dict) -> str:
    """Every string the store writes for ``parts`` (or the JSON itself if it cannot)."""
    out: list[str] = []
    try:
        bundle = bundle_from_parts(parts)
    except Exception:
        _strings(parts, out)
        return "\x00".join(out)
    with tempfile.TemporaryDirectory() as tmp:
        FileStore(Path(tmp)).save(bundle)
        for f in sorted(Path(tmp).rglob("*.json")):
            raw = f.read_text()
            out.append(raw)
            _strings(json.loads(raw), out)
    return "\x00".join(out)


def measure(mod, carrier: dict) -> dict:
    result: dict = {"found": {}, "removed": {}, "missed": {}, "fp": {}}
    for place in PLACES:
        found = removed = 0
        missed = []
        for item in PLANTED:
            parts, where = plant(json.loads(json.dumps(carrier)), place, item.text, item.secret)
            env = dict(item.env)
            paths = {f"{f.part}:{f.path}" for f in mod.scan(parts, env=env)}
            ok_found = set(where) <= paths
            out, _ = mod.redact(parts, env=env)
            ok_removed = not _left(item.secret, written(out))
            found += ok_found
            removed += ok_removed
            if not (ok_found and ok_removed):
                missed.append(item.name)
        flagged = sum(
            bool(mod.scan(plant(json.loads(json.dumps(carrier)), place, t)[0], env={}))
            for t in BENIGN
        )
        result["found"][place] = found
        result["removed"][place] = removed
        result["missed"][place] = missed
        result["fp"][place] = flagged
    return result


def code_flags(mod, files: list[Path]) -> tuple[int, int, dict[str, int]]:
    """(files flagged, findings, findings by kind) over ``files`` scanned as tool output."""
    flagged = total = 0
    kinds: dict[str, int] = {}
    for f in files:
        text = f.read_text(errors="replace")
        found = mod.scan({"runs": [{"events": [{"event": {"output": text}}]}]}, env={})
        flagged += bool(found)
        total += len(found)
        for x in found:
            kinds[x.kind] = kinds.get(x.kind, 0) + 1
    return flagged, total, kinds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", action="store_true", help="list the kinds missed")
    ap.add_argument("--code", type=int, default=0, help="scan N files of site-packages")
    args = ap.parse_args()
    if args.code:
        import random
        import sysconfig

        site = Path(sysconfig.get_paths()["purelib"])
        files = sorted([*site.rglob("*.py"), *site.rglob("*.md")])
        random.Random(1).shuffle(files)
        files = files[: args.code]
        mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"{len(files)} files of {site} ({mb:.1f} MB), each scanned as one tool output:")
        for name, mod in (("old", old), ("new", new)):
            flagged, total, kinds = code_flags(mod, files)
            print(f"  {name}: {flagged} files flagged, {total} findings {kinds}")
        print()
    carrier = load_parts()
    n, b = len(PLANTED), len(BENIGN)
    print(f"{n} planted secrets ({len({p.kind for p in PLANTED})} kinds), {b} benign strings\n")
    results = {"old": measure(old, carrier), "new": measure(new, carrier)}
    print(f"{'place':<14}{'old found':>11}{'old removed':>13}{'new found':>11}{'new removed':>13}")
    for place in PLACES:
        o, w = results["old"], results["new"]
        print(
            f"{place:<14}{o['found'][place]:>8}/{n}{o['removed'][place]:>10}/{n}"
            f"{w['found'][place]:>8}/{n}{w['removed'][place]:>10}/{n}"
        )
    print(f"\n{'place':<14}{'old flagged':>13}{'new flagged':>13}   (benign strings, of {b})")
    for place in PLACES:
        print(f"{place:<14}{results['old']['fp'][place]:>13}{results['new']['fp'][place]:>13}")
    if args.kinds:
        for who in ("old", "new"):
            print(f"\nmissed by {who}:")
            for place in PLACES:
                print(f"  {place}: {', '.join(results[who]['missed'][place]) or '-'}")


if __name__ == "__main__":
    main()
