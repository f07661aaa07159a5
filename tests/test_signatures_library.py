"""The built-in library: every example, lint-clean, and the catalogue's contract."""

from __future__ import annotations

import json

import pytest

from analyzer.signatures import BUILTIN_DIR, CATALOGUE, DETECTORS, lint, load_library, run_examples
from analyzer.signatures.load import json_schema

LIBRARY = load_library()
RESULTS = run_examples(LIBRARY)

# Error IDs the catalogue gives (CATALOGUE.md parts A-C).
CODES = {
    "dispose_artefacts_timed_out": {"181008"}, "no_disk_snapshots_found": {"181008", "566"},
    "disk_upload_timed_out": {"1011"}, "disk_download_timed_out": {"1012"},
    "component_timed_out": {"1003"}, "change_tracking_reset": {"1018"},
    "host_connection_refused": {"1022"}, "rdm_physical_mode_disk": {"1023"},
    "vmware_generic_failure": {"1028"}, "insufficient_key_vault_permissions": {"1039"},
    "protection_readiness_snapshots_present": {"31453"}, "storage_account_not_found": {"542"},
    "state_container_not_found": {"587"}, "subscription_snapshot_throttled": {"633"},
    "resync_snapshot_missing": {"508"}, "disk_change_id_unavailable": {"563"},
}


@pytest.mark.parametrize("result", RESULTS, ids=[f"{r.signature}:{r.key}" for r in RESULTS])
def test_example(result):
    assert result.ok, f"{result.path} {result.key}: {result.detail}\n  text: {result.example.text}"


def test_every_signature_with_matchers_has_examples_and_near_misses():
    for sig in LIBRARY.signatures.values():
        if sig.matchers:
            assert any(e.matches for e in sig.examples), sig.id
            assert any(not e.matches for e in sig.examples), sig.id


def test_library_lints_clean():
    problems = lint()
    assert problems == [], "\n".join(map(str, problems))


def test_every_catalogue_error_has_exactly_its_causes():
    for error_id, causes in CATALOGUE.items():
        sig = LIBRARY.signatures[error_id]
        assert sig.kind == "error"
        if causes is not None:
            assert [c.id for c in sig.causes] == list(causes), error_id
        assert sig.undetermined, error_id
        assert all(c.remediation for c in sig.causes), error_id


def test_codes_follow_the_catalogue():
    for error_id, codes in CODES.items():
        assert set(LIBRARY.signatures[error_id].codes) == codes, error_id
    coded = {code for sig in LIBRARY.errors() for code in sig.codes}
    assert coded == set().union(*CODES.values())


def test_shared_code_181008_is_decided_by_text():
    for error_id in ("dispose_artefacts_timed_out", "no_disk_snapshots_found"):
        for m in LIBRARY.signatures[error_id].matchers:
            if ("error_id", ("181008",)) in m.where:
                assert m.literal or m.regex, f"{error_id}: bare 181008 matcher"


def test_errors_show_in_portal_and_gateway():
    detector_only = {"replication_stalled", "slow_replication"}
    for sig in LIBRARY.errors():
        sources = {m.source for m in sig.matchers}
        if sig.id in detector_only:
            assert not sig.matchers and sig.params
        else:
            assert {"portal_events", "gateway_log"} <= sources, sig.id


def test_portal_matchers_by_error_id_for_every_code():
    for sig in LIBRARY.errors():
        for code in sig.codes:
            assert any(m.source == "portal_events" and (("error_id", (code,)) in m.where
                                                        or any(col == "error_id" and code in vals
                                                               for col, vals in m.where))
                       for m in sig.matchers), (sig.id, code)


def test_detector_thresholds_are_data():
    slow = LIBRARY.signatures["slow_replication"]
    assert slow.param("slow_rate_fraction", 0) == 0.25
    assert slow.param("slow_duration_factor", 0) == 4
    assert slow.param("max_disks_per_host", 0) == 8
    stalled = LIBRARY.signatures["replication_stalled"]
    assert (stalled.param("min_interval_h", 0), stalled.param("max_interval_h", 0)) == (1, 12)
    assert LIBRARY.signatures["disk_upload_timed_out"].param("low_rate_mbps", 0) > 0


def test_evidence_ids_resolve():
    for sig in LIBRARY.errors():
        for cause in sig.causes:
            for ev in cause.evidence:
                assert ev in DETECTORS or LIBRARY.signatures[ev].kind == "evidence", (sig.id, ev)


def test_connectivity_evidence_per_endpoint_kind():
    for ev in ("gateway_storage_unreachable", "cache_storage_unreachable", "service_bus_unreachable",
               "event_hub_unreachable", "key_vault_unreachable"):
        assert LIBRARY.signatures[ev].kind == "evidence"
        assert LIBRARY.signatures[ev].scope == "appliance"


def test_published_schema_is_current():
    published = json.loads((BUILTIN_DIR / "schema.json").read_text(encoding="utf-8"))
    assert published == json_schema(), "run: bundle-analyzer signatures schema -o signatures/schema.json"


def test_digest_is_stable_and_content_based():
    assert load_library().digest == LIBRARY.digest
    assert len(LIBRARY.digest) == 64


def test_every_signature_has_its_korean_texts():
    """A Korean report (--lang ko) needs no English fallback for the built-in library."""
    for sig in LIBRARY.signatures.values():
        assert sig.title_ko, sig.id
        assert bool(sig.summary_ko) == bool(sig.summary), sig.id
    for sig in LIBRARY.errors():
        for cause in sig.causes:
            assert cause.title_ko, (sig.id, cause.id)
            assert len(cause.remediation_ko) == len(cause.remediation), (sig.id, cause.id)
        assert len(sig.undetermined_ko) == len(sig.undetermined), sig.id
