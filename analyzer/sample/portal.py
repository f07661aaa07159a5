"""Portal replication events (FORMATS.md section 2) in the three forms engineers paste into tickets,
and the `Get-AzMigrateServerMigrationStatus` table.

    Time,Severity,Event,Machine,Event type,Error ID,Error message,Possible causes,Recommendation,Event code,Initiated by
    2024-05-14T10:21:42.0009123Z,Critical,Replication cycle failed for disk,APP01,Replication,1011,"The upload ...",...
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from analyzer.sample import catalogue as cat
from analyzer.sample import clock
from analyzer.sample.gateway import failure_text
from analyzer.sample.world import NEVER, Cycle, World

HEADER = ["Time", "Severity", "Event", "Machine", "Event type", "Error ID", "Error message", "Possible causes",
          "Recommendation", "Event code", "Initiated by"]
KOREAN_EVENTS = {"Replication cycle failed": "복제 주기 실패",
                 "Replication cycle failed for disk": "디스크의 복제 주기 실패"}


@dataclass
class Event:
    ms: int
    severity: str
    event: str
    machine: str
    event_type: str
    error_id: str
    message: str
    causes: str
    recommendation: str
    code: str
    initiated_by: str
    name: str  # event resource name (guid)


def _guid(world: World, *parts: object) -> str:
    rng = world.rng("guid", *parts)
    return (f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x}-"
            f"{rng.getrandbits(16):04x}-{rng.getrandbits(48):012x}")


def cycle_events(world: World, cycles: list[Cycle]) -> list[Event]:
    """One event per failed cycle the portal had reported by the end of the bundle."""
    out = []
    for c in cycles:
        if c.outcome != "failed" or c.portal is None or not (world.start <= c.portal < world.end):
            continue
        spec = cat.ERRORS[c.error]
        text = failure_text(world, c)
        if c.cid % 2:
            text += f"\nActivity ID: {_guid(world, c.key, 'activity')}"
        event = "Replication cycle failed for disk" if spec.disk_event else "Replication cycle failed"
        out.append(Event(c.portal, "Critical", event, c.vm.name, "Replication", spec.code or "", text,
                         cat.POSSIBLE_CAUSES.get(spec.code or "", "See the error message.\nCheck the appliance "
                                                 "and the VMware environment."),
                         cat.RECOMMENDATION, spec.token, "", _guid(world, c.key)))
    return out


def key_vault_event(world: World, ms: int, user: str, n: int = 0) -> Event:
    spec = cat.ERRORS["key_vault_operation_failed"]
    text = cat.error_text(spec, kv=world.key_vault, sa=world.cache_storage)
    return Event(ms, "Critical", "Enable replication failed", "", "Enable replication", "", text,
                 "The signed-in user has no access policy on the key vault for its storage permissions.",
                 "Give the user an access policy with storage permissions on the key vault, or sign in as a "
                 "user of the tenant, then retry.", "KeyVaultOperationFailed", user, _guid(world, "kv", n))


def setup_event(world: World, ms: int, user: str, machine: str) -> Event:
    return Event(ms, "Information", "Replication enabled", machine, "Enable replication", "",
                 f"Replication was enabled for virtual machine {machine}.", "", "", "EnableReplication", user,
                 _guid(world, "setup", machine, ms))


def _time(ms: int, form: str, tz: int) -> str:
    if form == "us":
        return clock.us_display(ms, tz)
    if form == "ko":
        return clock.korean_display(ms, tz)
    return clock.iso7(ms, ms * 7919)


def events_csv(events: list[Event], form: str = "iso", tz: int = 0, korean: bool = False) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(HEADER)
    for e in sorted(events, key=lambda e: (-e.ms, e.machine)):
        writer.writerow([_time(e.ms, form, tz), e.severity, KOREAN_EVENTS.get(e.event, e.event) if korean else e.event,
                         e.machine, e.event_type, e.error_id, e.message, e.causes, e.recommendation, e.code,
                         e.initiated_by])
    return buf.getvalue()


def events_json(world: World, events: list[Event], wrapped: bool = False) -> str:
    vault = f"/Subscriptions/{_guid(world, 'sub')}/resourceGroups/rg-migrate/providers/Microsoft.RecoveryServices/" \
            f"vaults/migrate-vault"
    items = []
    for e in sorted(events, key=lambda e: (-e.ms, e.machine)):
        when = clock.iso7(e.ms, e.ms * 7919)
        items.append({
            "id": f"{vault}/replicationEvents/{e.name}",
            "location": None,
            "name": e.name,
            "properties": {
                "affectedObjectCorrelationId": _guid(world, "corr", e.name),
                "affectedObjectFriendlyName": e.machine or None,
                "description": e.event,
                "eventCode": e.code,
                "eventSpecificDetails": None,
                "eventType": "VmHealth" if e.machine else "JobStatus",
                "fabricId": f"{vault}/replicationFabrics/{world.appliance}",
                "healthErrors": [{
                    "creationTimeUtc": when,
                    "errorCode": e.error_id,
                    "errorMessage": e.message,
                    "errorSeverity": "Error",
                    "errorSource": "SnapshotReplication",
                    "possibleCauses": e.causes,
                    "recommendedAction": e.recommendation,
                }] if e.message and e.severity != "Information" else [],
                "severity": e.severity,
                "timeOfOccurrence": when,
            },
            "resourceGroup": "rg-migrate",
            "type": "Microsoft.RecoveryServices/vaults/replicationEvents",
        })
    return json.dumps({"value": items} if wrapped else items, indent=2, ensure_ascii=False) + "\n"


def events_text(events: list[Event], tz: int = 0) -> str:
    """Error details as copied from the portal blade: label line, value line(s), blank line between."""
    blocks = []
    for e in sorted(events, key=lambda e: (-e.ms, e.machine)):
        if e.severity == "Information":
            continue
        blocks.append("\n".join([
            "Machine", e.machine or "-", "Error ID", e.error_id or "-", "Error Message", e.message,
            "Possible causes", e.causes, "Recommendation", e.recommendation,
            "First Seen At", clock.us_display(e.ms, tz)]))
    return "\n\n".join(blocks) + "\n"


def status_table(world: World, cycles: list[Cycle]) -> str:
    """Replication status per VM, with the portal's health rules: the last cycle decides."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["Appliance", "Server", "State", "Progress", "TimeElapsed", "TimeRemaining", "UploadSpeed",
                     "Health", "LastSync", "Datastore"])
    by_vm: dict[str, list[Cycle]] = {}
    for c in cycles:
        by_vm.setdefault(c.vm.name, []).append(c)
    for vm in world.vms:
        own = [c for c in by_vm.get(vm.name, []) if c.due < world.end]
        done = [c for c in own if c.outcome == "succeeded" and c.end < world.end]
        failed = any(c.outcome == "failed" for c in own)
        last = own[-1] if own else None
        stuck = last is not None and (last.outcome == "hung" or (last.outcome == "failed"))
        health = "Critical" if stuck else "Warning" if failed else "Normal"
        state = "Initial replication" if last and last.type == "InitialReplication" else "Delta sync"
        sync = clock.us_display(done[-1].end) if done else ""
        speed = f"{last.rate:.0f} MBps" if last else ""
        writer.writerow([world.appliance, vm.name, state, "100%" if last and last.end < NEVER else "0%",
                         "", "", speed, health, sync, vm.datastore_at(world.end)])
    return buf.getvalue()
