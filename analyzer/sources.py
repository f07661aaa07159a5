"""The source registry: which kinds of member the analyzer reads, how each is recognised, parsed.

Three words, three things:
- a *source* is a kind of evidence, named as the analysis JSON names it in `bundle.sources`
  (OUTPUT.md): gateway_log, portal_events, vcenter_tasks; replication_status shows in inspect;
- a *form* is one way a source comes in a bundle, with its own sniffer and parser; inspect
  shows each member's form;
- a *table* is a typed frame a parser fills (tables.SCHEMAS). The later stages read tables, and
  so do signatures: a matcher's `source` names the table it reads.

    source              form         parser                    tables it fills
    portal_events       events_csv   parsers/portal_events     portal_events
    portal_events       events_json  parsers/portal_events     portal_events
    portal_events       events_text  parsers/portal_events     portal_events, replication_status, appliance_resources, text_log
    replication_status  status_csv   parsers/portal_events     replication_status
    replication_status  status_text  parsers/portal_events     portal_events, replication_status, appliance_resources, text_log
    vcenter_tasks       task_csv     parsers/vcenter_task_csv  vcenter_tasks
    gateway_log         gateway_log  parsers/gateway_log       gateway_log, activity
    text                vmware_log   parsers/text_log          text_log
    vcenter_tasks       vpxd_log     parsers/vcenter_log       vcenter_log, vcenter_events, activity
    text                text         parsers/text_log          text_log

`text` is the fallback: any text member no other form claims (binary stays unrecognised). A
vpxd-like ESXi log (hostd, vpxa) is read as vpxd_log; its rows carry the ESXi host when the
member came in a vm-support archive.

vcenter_tasks is the source for all of vCenter: a vpxd log's task lines become vcenter_tasks rows
too, once the pipeline has paired them across members (vcenter_log.pair_tasks).

Sources are detected by content, never by name alone: `sniff` looks at the decoded head of a
member (first 64 KiB), trying the forms in the order above (most specific sniffers first).
Adding a log type = one parser module declaring its Source (parsers/lines.py), one line in
`registry` and in the table above, one test module.
"""

from __future__ import annotations

from collections.abc import Iterable

from analyzer.parsers import gateway_log, portal_events, text_log, vcenter_log, vcenter_task_csv
from analyzer.parsers.lines import Keep, ParseContext, Parsed, Source

__all__ = ["SNIFF_CHARS", "Keep", "ParseContext", "Parsed", "Source", "registry", "sniff", "tables_of"]

SNIFF_CHARS = 64 * 1024


def registry() -> list[Source]:
    """All sources, most specific sniffers first."""
    return [
        *portal_events.SOURCES,  # events CSV / JSON / pasted text, replication status table
        vcenter_task_csv.SOURCE,
        gateway_log.SOURCE,
        text_log.VMWARE_SOURCE,  # a VM's vmware.log: its ESXi 8 lines would pass for vpxd ones
        vcenter_log.SOURCE,
        text_log.SOURCE,  # the fallback: any other text (binary stays unrecognised)
    ]


def tables_of(names: Iterable[str]) -> set[str]:
    """The tables the sources of these names fill, in any of their forms."""
    names = set(names)
    return {table for source in registry() if source.name in names for table in source.tables}


def sniff(head: str, member: str, sources: list[Source] | None = None) -> Source | None:
    for source in sources or registry():
        if source.sniff(head, member):
            return source
    return None
