"""The fleet page (OUT/index.html of a batch): every bundle's verdicts grouped by issue
(error, cause), ESXi host and appliance, with VMs affected, first/last seen and links to each
bundle's report. One self-contained file like the reports: inline CSS/JS, CSP, no network.
"""

from __future__ import annotations

import polars as pl

from analyzer import __version__
from analyzer.i18n import DEFAULT_LANG, Messages, format_iso, messages
from analyzer.report.page import environment, page_words

SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
SEVERITY_NAMES = {rank: name for name, rank in SEVERITY_RANK.items()} | {3: "unknown"}
ISO = "%Y-%m-%d %H:%M:%SZ"


def _grouped(verdicts: pl.DataFrame, keys: list[str], *extra: pl.Expr) -> list[dict]:
    groups = (
        verdicts.group_by(keys)
        .agg(pl.col("rank").min(), pl.len().alias("verdicts"),
             pl.col("vm").drop_nulls().unique().sort().alias("vms"),
             pl.col("vm_key").drop_nulls().n_unique().alias("vm_count"),
             pl.col("bundle_id").unique().sort().alias("bundles"),
             pl.col("first_seen").min().dt.strftime(ISO),
             pl.col("last_seen").max().dt.strftime(ISO), *extra)
        .sort(["rank", "vm_count", *keys], descending=[False, True] + [False] * len(keys),
              nulls_last=True)
        .with_columns(pl.col("rank").replace_strict(SEVERITY_NAMES, return_dtype=pl.Utf8)
                      .alias("severity"))
    )
    return groups.to_dicts()


def fleet_view(bundles: dict[str, dict], verdicts: pl.DataFrame,
               failures: list[tuple], m: Messages | None = None) -> dict:
    """The numbers and groups the page shows (plain values, for the template and for tests)."""
    names = pl.DataFrame({"bundle_id": list(bundles),
                          "_name": [e["name"] for e in bundles.values()]},
                         schema={"bundle_id": pl.Utf8, "_name": pl.Utf8})
    v = (verdicts.join(names, on="bundle_id", how="left")
         .with_columns(
             rank=pl.col("severity").replace_strict(SEVERITY_RANK, default=3,
                                                    return_dtype=pl.Int64),
             vm_key=pl.concat_str(["bundle_id", "vm"], separator="/"),
             issue=pl.concat_str([pl.col("error"), pl.col("cause").fill_null("?")],
                                 separator=" · "),
             appliance=pl.coalesce("appliance", "_name", "bundle_id"),
             host=pl.col("host").fill_null((m or messages()).text("fleet.unknown_host"))))
    issues_of = pl.col("issue").drop_nulls().unique().sort().alias("issues")
    health: dict[str, int] = {}
    for entry in bundles.values():
        for state, count in entry.get("health", {}).items():
            health[state] = health.get(state, 0) + count
    severity_counts = {name: v.filter(pl.col("severity") == name).height
                       for name in SEVERITY_RANK}
    return {
        "issues": _grouped(v, ["error", "cause"], pl.col("title").drop_nulls().first(),
                           pl.col("error_code").drop_nulls().first()),
        "hosts": _grouped(v, ["host"], issues_of),
        "appliances": _grouped(v, ["appliance"], issues_of),
        "bundles": [{"id": b, **entry} for b, entry in sorted(bundles.items())],
        # (path, message) or (path, message, the errors/ file that tells more)
        "failures": [{"path": f[0], "message": f[1], "details": f[2] if len(f) > 2 else None}
                     for f in failures],
        "totals": {"bundles": len(bundles), "failed": len(failures),
                   "vms": sum(e.get("vms", 0) for e in bundles.values()),
                   "verdicts": v.height, "severity": severity_counts,
                   "health": dict(sorted(health.items()))},
    }


def render_fleet(bundles: dict[str, dict], verdicts: pl.DataFrame,
                 failures: list[tuple], lang: str | None = None) -> str:
    """The fleet page in `lang` (--lang), English by default."""
    m = messages(lang or DEFAULT_LANG)
    view = fleet_view(bundles, verdicts, failures, m)

    def show_time(value: object) -> object:  # English shows the times as they are
        return value if m.lang == DEFAULT_LANG else format_iso(value, m.lang) or value

    return environment().get_template("fleet.html.j2").render(version=__version__, show_time=show_time,
                                                              **view, **page_words(m))
