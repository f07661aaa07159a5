"""Check that a change leaves the analyzer's outputs as they were, on every sample bundle.

    PYTHONPATH=/work/main python scripts/compare_outputs.py run /tmp/before   # outputs of one checkout
    PYTHONPATH=.          python scripts/compare_outputs.py run /tmp/after
    python scripts/compare_outputs.py diff /tmp/before /tmp/after             # exit 1 on any difference

`run` writes, for each sample_bundles/*.zip, `analyze`'s HTML report and JSON and `inspect --json`,
running the command line of whatever checkout PYTHONPATH points at (from OUT, so that the
current directory's checkout does not shadow it). `diff` compares them byte for
byte, except the time of the run: `bundle.analyzed_at` is left out of the JSON, and the same
time (as the JSON gives it and as the report shows it) is masked in the HTML.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_bundles"
MASK = b"<analyzed_at>"


def run(out: Path) -> int:
    out = out.resolve()
    for sub in ("html", "json", "inspect"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    bundles = sorted(SAMPLES.glob("*.zip"))
    for bundle in bundles:
        stem = bundle.name[: -len(".zip")]
        cli = [sys.executable, "-m", "analyzer"]
        subprocess.run([*cli, "analyze", str(bundle), "-o", str(out / "html"),
                        "--json", str(out / "json" / f"{stem}.json")],
                       check=True, cwd=out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([*cli, "inspect", str(bundle), "--json", str(out / "inspect" / f"{stem}.json")],
                       check=True, cwd=out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"{len(bundles)} bundles -> {out}")
    return 0


def _analysis(path: Path) -> tuple[dict, str | None]:
    doc = json.loads(path.read_bytes())
    return doc, doc["bundle"].pop("analyzed_at", None)


def _masked_html(path: Path, analyzed_at: str | None) -> bytes:
    html = path.read_bytes()
    if analyzed_at:
        shown = datetime.fromisoformat(analyzed_at.replace("Z", "+00:00")).astimezone(timezone.utc)
        for form in {analyzed_at, shown.strftime("%Y-%m-%d %H:%M:%SZ")}:
            html = html.replace(form.encode(), MASK)
    return html


def diff(before: Path, after: Path) -> int:
    differences, compared = [], 0
    stems = sorted(p.stem for p in (before / "json").glob("*.json"))
    if not stems:
        print(f"no outputs in {before}/json")
        return 1
    for stem in stems:
        try:
            old, old_at = _analysis(before / "json" / f"{stem}.json")
            new, new_at = _analysis(after / "json" / f"{stem}.json")
            pairs = [
                ("analysis JSON", json.dumps(old, sort_keys=False).encode(),
                 json.dumps(new, sort_keys=False).encode()),
                ("analysis JSON bytes", (before / "json" / f"{stem}.json").read_bytes().replace(
                    old_at.encode(), MASK) if old_at else b"",
                 (after / "json" / f"{stem}.json").read_bytes().replace(
                     new_at.encode(), MASK) if new_at else b""),
                ("HTML report", _masked_html(before / "html" / f"{stem}.html", old_at),
                 _masked_html(after / "html" / f"{stem}.html", new_at)),
                ("inspect JSON", (before / "inspect" / f"{stem}.json").read_bytes(),
                 (after / "inspect" / f"{stem}.json").read_bytes()),
            ]
        except FileNotFoundError as exc:
            differences.append(f"{stem}: missing {exc.filename}")
            continue
        for what, a, b in pairs:
            compared += 1
            if a != b:
                differences.append(f"{stem}: {what} differs")
    for line in differences:
        print(line)
    print(f"{len(stems)} bundles, {compared} outputs compared, {len(differences)} differ")
    return 1 if differences else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="write the outputs of every sample bundle").add_argument("out", type=Path)
    compare = commands.add_parser("diff", help="compare two runs' outputs")
    compare.add_argument("before", type=Path)
    compare.add_argument("after", type=Path)
    args = parser.parse_args()
    return run(args.out) if args.command == "run" else diff(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
