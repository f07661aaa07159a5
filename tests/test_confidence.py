"""verdicts.confidence_of: confidence follows what the evidence is (direct or circumstantial), the
signature's confidence is only its ceiling. Table-driven over the kinds of finding."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from analyzer.evidence import Entry, Failure, Finding
from analyzer.signatures.model import Cause, Signature
from analyzer.verdicts import _rank, confidence_of

T = datetime(2024, 5, 14, 12, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
M = timedelta(minutes=1)
ERROR = Signature(id="some_error", title="Some error", kind="error", severity="critical")


def cause(scope: str, confidence: str = "high") -> Cause:
    return Cause(id="c", evidence=("x",), scope=scope, before=timedelta(days=2), after=timedelta(minutes=10),
                 confidence=confidence, remediation=())


def failure(start: datetime | None = T - 10 * M, at: datetime | None = T) -> Failure:
    cycle = {"start": start, "end": at, "host": "esx01"} if start else None
    return Failure(ERROR, "app01", cycle, at, at)


def seen(*times: datetime, evidence: str = "some_evidence", **kw) -> Finding:
    return Finding(evidence, tuple(Entry(t, "vcenter_tasks", "vpxd-1.log", 1, "line", evidence) for t in times), **kw)


HOURLY = [(T - n * H - 5 * M, T - n * H) for n in range(1, 30)]  # the VM's good cycles, hourly before it

CASES = [
    # (what, finding, failure, cause, the VM's successful cycles, expected)
    ("a task on the VM overlapping the cycle", seen(T - 12 * M, evidence="detect.overlapping_task"),
     failure(), cause("vm"), HOURLY, "high"),
    ("a fault on the VM's own disk during the cycle", seen(T - 2 * M), failure(), cause("vm"), HOURLY, "high"),
    ("the same host, hours before", seen(T - 3 * H), failure(), cause("host"), HOURLY, "medium"),
    ("a relocate a day earlier, good cycles since", seen(T - 24 * H), failure(), cause("vm"), HOURLY, "medium"),
    ("a relocate two hours before, no good cycle since", seen(T - 2 * H), failure(), cause("vm"),
     [(T - 3 * H, T - 3 * H + 5 * M)], "high"),
    ("a timed-out task during the previous cycle, which then completed", seen(T - 65 * M), failure(), cause("vm"),
     [(T - 70 * M, T - 60 * M)], "high"),
    ("a low rate with no connectivity failure: found by exclusion", seen(T - 5 * M, evidence="detect.low_read_rate"),
     failure(), cause("vm", "medium"), HOURLY, "medium"),
    ("the earliest initiator taken for the vault's creator", seen(T, evidence="detect.kv_other_user", basis="guess"),
     failure(None), cause("appliance"), [], "medium"),
    ("a guest (#EXT#) initiator on the failing row", seen(T, evidence="detect.kv_guest_user"), failure(None),
     cause("appliance"), [], "high"),
    ("the VDDK version in use, logged days before", seen(T - 72 * H, basis="standing"), failure(),
     cause("appliance"), HOURLY, "high"),
    ("an outage covering the failure", Finding("detect.service_down", (), (T - 30 * M, None)), failure(),
     cause("appliance"), HOURLY, "high"),
    ("connectivity failures that stopped before the cycle", Finding("x", (), (T - 3 * H, T - 2 * H)), failure(),
     cause("appliance"), [], "medium"),
    ("more than 8 disks on the host while the cycle ran", seen(T - 20 * M, at=(T - 5 * M,)), failure(), cause("host"),
     HOURLY, "high"),
    ("more than 8 disks on the host 50 minutes before it", seen(T - 10 * M, at=(T - 60 * M,)), failure(),
     cause("host"), HOURLY, "medium"),
    ("direct evidence under a ceiling of medium", seen(T - 2 * M), failure(), cause("vm", "medium"), HOURLY, "medium"),
    ("any evidence of an error read with no time", seen(T - 2 * M), Failure(ERROR, "app01", None, None, None),
     cause("vm"), HOURLY, "medium"),
]


@pytest.mark.parametrize("what, finding, fail, cause_, succeeded, expected", CASES, ids=[c[0] for c in CASES])
def test_confidence_follows_the_evidence(what, finding, fail, cause_, succeeded, expected):
    assert confidence_of(finding, fail, cause_, succeeded) == expected


def test_the_catch_all_yields_to_any_cause_with_evidence_of_its_own_then_direct_beats_circumstantial():
    throttled = (1, Cause("vcenter_read_throttled", ("detect.low_read_rate",), "vm", H, M, "medium", ()),
                 [seen(T, evidence="detect.low_read_rate")], "medium")
    overloaded = (2, Cause("appliance_overloaded", ("detect.appliance_saturated",), "appliance", H, M, "medium", ()),
                  [seen(T, evidence="detect.appliance_saturated")], "medium")
    nfc_before = (0, Cause("nfc_buffer_exhausted", ("detect.host_parallel_disks",), "host", H, M, "high", ()),
                  [seen(T, evidence="detect.host_parallel_disks")], "medium")
    nfc_during = nfc_before[:3] + ("high",)
    assert min([throttled, overloaded], key=_rank) is overloaded
    assert min([throttled, overloaded, nfc_before], key=_rank) is nfc_before  # a tie: the listed order
    assert min([overloaded, nfc_during, throttled], key=_rank) is nfc_during
    assert min([throttled], key=_rank) is throttled  # alone, the catch-all stands
