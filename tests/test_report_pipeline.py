"""The report of a real (tiny) bundle run through the pipeline: hostile names, secrets in lines."""

from __future__ import annotations

from pathlib import Path

from analyzer import pipeline
from analyzer.report import render
from tests.test_report import Page, assert_inert

HOSTILE_VM = "APP01<img src=x onerror=alert(1)>{{7*7}}"
HOSTILE_HOST = "esx07<script>alert(2)</script>"
HOSTILE_FILE = 'Gateway"><img src=x onerror=alert(9)>{{7*7}}.log'
SECRETS = ("TOPSECRETSIG", "TOPSECRETKEY")

GATEWAY_LOG = f"""\
2024-05-14T08:00:00.000Z Info [1] Gateway.Service.Host - Service asrgwy starting. version=25.24.02.07
2024-05-14T08:00:01.000Z Info [1] Gateway.Service.Host - Service asrgwy started.
2024-05-14T09:58:00.000Z Info [9] Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine - Replication cycle started. vm="{HOSTILE_VM}" vmId=vm-1042 host={HOSTILE_HOST} cycleId=17 type=DeltaReplication disks=1
2024-05-14T10:01:58.201Z Critical [12] Gateway.Service.Host - Unhandled exception: Request to https://migrategwsa1.blob.core.windows.net/c/x?sv=2021&sig=TOPSECRETSIG&se=2024 failed. </script><script>alert(3)</script>
2024-05-14T10:02:00.004Z Info [1] Gateway.Service.Host - Service asrgwy stopping. reason="unhandled exception"
2024-05-14T10:02:03.517Z Info [1] Gateway.Service.Host - Service asrgwy stopped.
2024-05-14T10:47:12.880Z Info [1] Gateway.Service.Host - Service asrgwy starting. version=25.24.02.07
2024-05-14T10:58:00.000Z Error [9] Gateway.Service.StateMachine.SnapshotReplication.SnapshotReplicationEngine - Replication cycle failed. vm="{HOSTILE_VM}" cycleId=17 errorId=1011 error=DiskUploadTimedOut message="The upload of data for disk [ds01] APP01/APP01_1.vmdk did not complete within the expected time. AccountKey=TOPSECRETKEY"
2024-05-14T11:00:00.000Z Info [9] Gateway.Service.Host - Heartbeat. activeCycles=0 queuedCycles=0
"""


def hostile_bundle(root: Path) -> Path:
    """A bundle directory whose gateway log carries markup in names, file name and lines."""
    logs = root / "hostile-bundle" / "Logs"
    logs.mkdir(parents=True)
    (logs / HOSTILE_FILE).write_text(GATEWAY_LOG, encoding="utf-8")
    return logs.parent


def test_pipeline_report_is_redacted_and_inert(tmp_path):
    doc = pipeline.analyze(hostile_bundle(tmp_path)).doc
    html = render(doc)
    page = assert_inert(html)
    for secret in SECRETS:
        assert secret not in html
    text = page.text()
    assert HOSTILE_VM in text and HOSTILE_HOST in text
    assert f"Logs/{HOSTILE_FILE}" in text  # evidence names its member, as text
    assert "sig=&lt;redacted&gt;" in html
    assert any(t == "article" for t, _ in page.tags)  # the outage card is there
