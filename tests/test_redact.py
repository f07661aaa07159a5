"""Redaction rules (analyzer/redact.py): every kind of secret goes, ordinary text stays.

End-to-end checks (secrets planted in bundles, every output scanned) are in test_hostile.py.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer import tables
from analyzer.report.page import unpacked_json
import analyzer.redact as redact_module
from analyzer.redact import MASK, redact, redact_doc, redact_expr, redact_frame, redact_series, redact_texts

STORAGE_KEY = "Xy7+" * 21 + "ab=="  # 88 characters, like an account key
BUS_KEY = "Q2hhbmdlTWUrUGxlYXNlL0J1c0tleTAxMjM0NTY3OA="  # 44 characters
JWT = ("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL21hbmFnZW1lbnQifQ."
       "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")

# (text with a secret, the secret)
SECRETS = [
    ("Request to https://migratelsa1.blob.core.windows.net/c/b?sv=2021-08-06&sr=c&sig=Ab%2BcD3fG%3D&se=2024-05-15 failed",
     "Ab%2BcD3fG%3D"),
    ("https://migratelsa1.blob.core.windows.net/c/b?sv=2021&SIG=UpperCaseSig99&se=1", "UpperCaseSig99"),
    ("Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
     f"SharedAccessKey={BUS_KEY}", BUS_KEY),
    (f"DefaultEndpointsProtocol=https;AccountName=migrategwsa1;AccountKey={STORAGE_KEY};"
     "EndpointSuffix=core.windows.net", STORAGE_KEY),
    ("SharedAccessSignature sr=https%3a%2f%2fns1.servicebus.windows.net&sig=SbSigValue42%3d&se=1715680000&skn=Root",
     "SbSigValue42"),
    ("Connecting with user=admin password=Hunter2!x", "Hunter2!x"),
    ("login failed; Password : S3cr3t,with,commas", "S3cr3t,with,commas"),
    ('config {"password": "json pass 1", "user": "bob"}', "json pass 1"),
    ("config {'clientSecret': 'py-secret-7'}", "py-secret-7"),
    ('Replication cycle failed. vm=APP01 message="auth failed pwd=\\"quoted pw 9\\" for user"', "quoted pw 9"),
    ("Server=tcp:db;User ID=sa;Pwd=PlainPwd77;", "PlainPwd77"),
    ("client_secret=AppSecret~123", "AppSecret~123"),
    ("access_token=at-0123456789&refresh_token=rt-9876543210", "at-0123456789"),
    ("access_token=at-0123456789&refresh_token=rt-9876543210", "rt-9876543210"),
    ("authToken: tok_abcdef123", "tok_abcdef123"),
    (f"Authorization: Bearer {JWT}", JWT.split(".")[2]),
    (f"Authorization: Bearer opaqueToken1234567890", "opaqueToken1234567890"),
    ("Authorization: Basic YWRtaW46cGFzc3dvcmQ=", "YWRtaW46cGFzc3dvcmQ"),
    (f"token was {JWT} then", JWT.split(".")[1]),
    ("Authorization: SharedKey migratelsa1:ctzMq410TV3wS7upTBcunJTDLEJwMAZuFPfr0mrrA08=",
     "ctzMq410TV3wS7upTBcunJTDLEJwMAZuFPfr0mrrA08"),
    ("proxy http://svc-proxy:ProxyPass55@proxy.contoso.local:8080 refused", "ProxyPass55"),
    (f"primary key {STORAGE_KEY} rotated", STORAGE_KEY),
    (f"keys {BUS_KEY} {BUS_KEY[::-1][1:]}= end", BUS_KEY[::-1][1:]),
    ("https%3A%2F%2Fa.blob.core.windows.net%2Fc%3Fsv%3D1%26sig%3DEncodedSig77%26se%3D2",
     "EncodedSig77"),
    ("-----BEGIN RSA PRIVATE KEY-----MIIEowIBAAKCAQEA7bq-----END RSA PRIVATE KEY-----",
     "MIIEowIBAAKCAQEA7bq"),
]

# Ordinary log and catalogue text that must come out unchanged.
PLAIN = [
    "Key Vault operation failed. Operation: Generate shared access signature definition, "
    "Key Vault: kv-migrate, Storage Account: migratelsa1 failed",
    "Replication cycle failed. vm=APP01 cycleId=17 errorId=1011 error=DiskUploadTimedOut",
    "Disk upload progress. vm=APP01 disk=\"[ds01] APP01/APP01_1.vmdk\" diskId=6000C29a-1d2e-4f5a",
    "Request to https://migratelsa1.blob.core.windows.net/replication/state.json failed. "
    "System.Net.WebException: Unable to connect to the remote server",
    "Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey",
    "[VpxLRO] -- BEGIN task-88231 -- vm-1042 -- vim.VirtualMachine.createSnapshot -- 52b1c2d3",
    "Token renewal succeeded.",
    "The bearer of this message",
    "The operation has timed out",
    "C:\\ProgramData\\Microsoft Azure\\Logs\\GatewayService.log",
    "가상 머신 APP01의 복제 주기 실패",
    "",
]


@pytest.mark.parametrize("text,secret", SECRETS, ids=[s[:40] for _, s in SECRETS])
def test_secret_is_masked(text, secret):
    out = redact(text)
    assert secret not in out
    assert MASK in out


def test_what_surrounds_a_secret_stays():
    out = redact("Request to https://migratelsa1.blob.core.windows.net/c/b?sv=2021&sig=XyZ123&se=2024 "
                 "failed. System.Net.WebException: Unable to connect to the remote server")
    assert out == ("Request to https://migratelsa1.blob.core.windows.net/c/b?sv=2021&sig=<redacted>&se=2024 "
                   "failed. System.Net.WebException: Unable to connect to the remote server")
    assert redact("a;SharedAccessKeyName=Root;SharedAccessKey=abc;EntityPath=hub") == \
        "a;SharedAccessKeyName=Root;SharedAccessKey=<redacted>;EntityPath=hub"


@pytest.mark.parametrize("text", PLAIN)
def test_plain_text_is_unchanged(text):
    assert redact(text) == text


def test_none_and_empty_pass_through():
    assert redact(None) is None
    assert redact("") == ""
    assert redact_texts([]) == []
    assert redact_texts([None, "sig=1"]) == [None, "sig=" + MASK]


def test_library_guidance_is_not_redacted():
    """Titles, summaries and remediation of the signatures are people's text: no false hits."""
    from analyzer.signatures import load_library

    texts = [t for s in load_library().signatures.values()
             for t in (s.title, s.summary, *s.undetermined, *s.references,
                       *(r for c in s.causes for r in c.remediation))]
    assert len(texts) > 100
    changed = [t for t, r in zip(texts, redact_texts(texts)) if t != r]
    assert changed == []


def test_doc_every_string_and_key_redacted_input_untouched():
    doc = {"bundle": {"name": "case sig=FileNameSig.zip", "records": 3, "ok": True, "none": None},
           "verdicts": [{"evidence": [{"text": "pwd=EvidencePwd", "line": 7}],
                         "cycles": ("token=TupleTok",)}],
           "password=KeyPwd": "v"}
    before = copy.deepcopy(doc)
    out = redact_doc(doc)
    assert doc == before
    flat = repr(out)
    for secret in ("FileNameSig", "EvidencePwd", "TupleTok", "KeyPwd"):
        assert secret not in flat
    assert out["bundle"]["records"] == 3 and out["bundle"]["ok"] is True and out["bundle"]["none"] is None
    assert out["verdicts"][0]["evidence"][0]["line"] == 7
    assert isinstance(out["verdicts"][0]["cycles"], tuple)
    assert "password=" + MASK in out


def test_doc_redaction_can_be_turned_off():
    doc = {"text": "sig=KeepMe"}
    assert redact_doc(doc, enabled=False) is doc
    assert redact_doc("sig=x") == "sig=" + MASK
    assert redact_doc(42) == 42


def test_frame_text_list_struct_columns_redacted_nulls_kept():
    frame = pl.DataFrame({
        "text": ["sig=S1", None, "plain"],
        "n": [1, 2, 3],
        "names": [["pwd=S2", "ok"], None, []],
        "pair": [{"name": "a", "value": "token=S3"}, None, {"name": "b", "value": None}],
    })
    out = redact_frame(frame)
    assert out.schema == frame.schema
    assert out["text"].to_list() == ["sig=" + MASK, None, "plain"]
    assert out["n"].to_list() == [1, 2, 3]
    assert out["names"].to_list() == [["pwd=" + MASK, "ok"], None, []]
    assert out["pair"].to_list() == [{"name": "a", "value": "token=" + MASK}, None,
                                     {"name": "b", "value": None}]
    assert redact_frame(frame, enabled=False) is frame


def test_frame_categorical_columns_are_redacted_as_text():
    frame = pl.DataFrame({"error_message": ["upload failed sig=S1", None, "upload failed sig=S1"]},
                         schema={"error_message": pl.Categorical()})
    out = redact_frame(frame)
    assert out["error_message"].to_list() == ["upload failed sig=" + MASK, None, "upload failed sig=" + MASK]


def test_matches_table_captures_are_redacted():
    matches = tables.conform("matches", pl.DataFrame({
        "member": ["m"], "line": [1], "signature": ["x"], "text": ["sig=S4"],
        "captures": [[{"name": "endpoint", "value": "a?sig=S5"}]],
    }))
    out = redact_frame(matches)
    assert out.schema == matches.schema
    assert "S4" not in repr(out.to_dicts()) and "S5" not in repr(out.to_dicts())


KEYS = st.sampled_from(["sig", "SharedAccessKey", "AccountKey", "password", "Password", "pwd",
                        "client_secret", "access_token", "token", "apiKey", "passwd"])
SEPARATORS = st.sampled_from(["=", ": ", " = ", "%3D", '": "', "':'"])
VALUE = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/%~!.-_",
                min_size=8, max_size=40)
AROUND = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(before=AROUND, key=KEYS, sep=SEPARATORS, value=VALUE, after=AROUND,
       end=st.sampled_from([" ", ";", "&", "\n", '"', "'"]))
def test_planted_key_value_secret_never_survives(before, key, sep, value, after, end):
    text = f"{before} {key}{sep}{value}{end}{after}"
    out = redact(text)
    assert value not in out or value in before or value in after


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_redaction_is_idempotent_and_consistent_with_frames(text):
    once = redact(text)
    assert redact(once) == once
    assert redact_frame(pl.DataFrame({"t": [text]}))["t"][0] == once


# ---------------------------------------------------------------------------------------------
# redact_doc and redact_texts skip text that no rule can change: the result must be what running
# every rule over every string gives (the reference below, the implementation before the skip).

def every_string_redacted(value):
    found = []

    def collect(v):
        if isinstance(v, str):
            found.append(v)
        elif isinstance(v, dict):
            for key, item in v.items():
                collect(key)
                collect(item)
        elif isinstance(v, (list, tuple)):
            for item in v:
                collect(item)

    def rebuild(v, cleaned):
        if isinstance(v, str):
            return next(cleaned)
        if isinstance(v, dict):
            out = {}
            for key, item in v.items():
                new_key = rebuild(key, cleaned)
                out[new_key] = rebuild(item, cleaned)
            return out
        if isinstance(v, (list, tuple)):
            return type(v)(rebuild(item, cleaned) for item in v)
        return v

    collect(value)
    if not found:
        return value
    series = pl.Series("t", found, dtype=pl.Utf8)
    return rebuild(value, iter(series.to_frame().select(redact_expr(pl.col("t")))["t"].to_list()))


class Names(list):
    pass


# Pieces of secrets and near misses, so that random text often holds one, whole or cut.
PIECES = st.sampled_from([
    "sig=", "SIG%3d", "ſig=", "PASSWORD: ", "pwd=", "token", "Bearer ", "basic  ", "SharedKey a:",
    "eyJabcde.fghij.", "eyJ", "://u:p@", "https://", "-----BEGIN RSA PRIVATE KEY-----", "Xy7+" * 10,
    "=", "==", '"', "'", "\\", ";", "&", " ", "\n", "é", "K", "secretive", "x", "12345", "API_KEY",
    "Credentials", "vm=APP01", "<", ">",
])
TEXT = st.one_of(st.lists(PIECES, max_size=4).map("".join), st.text(max_size=40))
LEAF = st.one_of(TEXT, st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False))
DOC = st.recursive(LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.lists(inner, max_size=3).map(tuple),
    st.lists(inner, max_size=3).map(Names), st.dictionaries(TEXT, inner, max_size=5)), max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(DOC, st.sampled_from([1, 2, 3, redact_module._BATCH]))
def test_doc_same_as_every_string_redacted(doc, batch):
    """Whatever the batches the document's strings are read in."""
    before = copy.deepcopy(doc)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redact_module, "_BATCH", batch)
        out = redact_doc(doc)
    expected = every_string_redacted(doc)
    assert doc == before
    assert out == expected
    assert repr(out) == repr(expected)  # also key order, tuples and list subclasses


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(TEXT, st.none()), max_size=20))
def test_texts_same_as_every_rule_on_every_text(texts):
    expected = pl.Series("t", texts, dtype=pl.Utf8).to_frame().select(redact_expr(pl.col("t")))["t"]
    assert redact_texts(texts) == expected.to_list()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(TEXT, st.none()), max_size=20), st.booleans())
def test_series_same_as_every_rule_on_every_text(texts, categorical):
    """redact_series (the document's per-VM columns) runs the rules once per distinct value."""
    column = pl.Series("t", texts, dtype=pl.Utf8)
    expected = column.to_frame().select(redact_expr(pl.col("t")))["t"]
    out = redact_series(column.cast(pl.Categorical) if categorical else column)
    assert out.dtype == pl.Utf8 and out.to_list() == expected.to_list()


# The shortest text each rule changes, one per key name: none may be skipped as plain.
SHORTEST = [f"{key}=v" for key in (
    "sig", "signature", "sharedaccesskey", "sharedaccesssignature", "accountkey", "primarykey",
    "secondarykey", "password", "passwd", "pwd", "passphrase", "secret", "token", "apikey", "api_key",
    "credential", "credentials", "SIG", "ſig", "Pwd", "myToKeN")] + [
    "bearer abcdefgh", "BASIC abcdefgh", "sharedkey a:b", "eyJabcde.fghij.", "a://u:p@",
    "Xy7+" * 10 + "=", "-----BEGIN PRIVATE KEY-----"]


def test_shortest_secrets_are_not_skipped():
    expected = pl.Series("t", SHORTEST).to_frame().select(redact_expr(pl.col("t")))["t"].to_list()
    assert all(t != e for t, e in zip(SHORTEST, expected))
    assert redact_texts(SHORTEST) == expected
    assert redact_doc({t: [t] for t in SHORTEST}) == every_string_redacted({t: [t] for t in SHORTEST})


def test_doc_keys_redacted_alike_keep_the_first_place_and_the_last_value():
    doc = {"a": 1, "sig=One": ("pwd=x", "y"), "b": [{"sig=Two": 2}], "sig=Two": 3}
    assert repr(redact_doc(doc)) == repr(every_string_redacted(doc))
    assert list(redact_doc(doc)) == ["a", "sig=" + MASK, "b"]


def test_doc_without_strings_is_returned_as_is():
    doc = {1: [2, 3.0, None]}
    assert redact_doc(doc) is doc


# ---------------------------------------------------------------------------------------------
# End to end: secrets planted in every source never reach any output; --no-redact shows them.

from tests.test_hostile import (cli_env, gateway_log, make_zip, portal_csv, portal_row,  # noqa: E402
                                run_cli, task_csv, task_row, vpxd_log)

LSA = "https://migratelsa1329610309.blob.core.windows.net/replication"
FAILS = "failed. System.Net.WebException: Unable to connect to the remote server"
PLANTED_JWT = ("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJnYXRld2F5In0."
               "GwJwtSignature0003xyz")
# marker -> the source it is planted in; every marker is unique, so a hit names its route.
PLANTED = {
    "GwSasSig0001": "gateway SAS sig= on a storage failure (evidence)",
    "GwAccountKey0002": "gateway storage connection string AccountKey=",
    PLANTED_JWT: "gateway Authorization: Bearer JWT",
    "GwProxyPass0004": "gateway proxy URL credentials",
    "GwPassword0005": "gateway password=",
    "GwSbKey0006": "gateway Service Bus SharedAccessKey=",
    "GwUnparsed0007": "gateway line before the first record (diagnostic sample)",
    "PortalSig0008": "portal CSV error message (SAS URL)",
    "PortalTime0009": "portal CSV Time column (diagnostic sample)",
    "VpxdAccountKey0010": "vpxd fault message",
    "VpxdUnparsed0011": "vpxd line before the first record (diagnostic sample)",
    "TaskCsvSig0012": "vSphere task CSV Details",
    "MemberSig0013": "member name",
    "GwTokenSig0017": "gateway message= token (a categorical column of the dumped tables)",
}


def secrets_bundle(folder: Path) -> Path:
    extra = "\n".join(
        f"2024-05-14T10:04:{n}0.000Z Error [7] Gateway.Service.Upload.BlobClient - {text}" for n, text in
        enumerate([
            f"Request to {LSA}/a?sv=2021-08-06&sr=b&sig=GwSasSig0001%2B&se=2024-05-15 {FAILS}",
            "Storage client DefaultEndpointsProtocol=https;AccountName=migratelsa1329610309;"
            f"AccountKey=GwAccountKey0002{'A' * 70}==;EndpointSuffix=core.windows.net: "
            f"request to {LSA}/b {FAILS}",
            f"Request to {LSA}/c with Authorization: Bearer {PLANTED_JWT} {FAILS}",
            f"Request to {LSA}/d via http://svcproxy:GwProxyPass0004@proxy.contoso.local:8080 "
            f"password=GwPassword0005 {FAILS}",
            f"Request to {LSA}/e relaying Endpoint=sb://migratesb1.servicebus.windows.net/;"
            f"SharedAccessKeyName=Root;SharedAccessKey=GwSbKey0006xyz= {FAILS}",
            f'Upload retry. vm=APP01 message="request to {LSA}/g?sv=2021-08-06&sig=GwTokenSig0017 failed"',
        ]))
    gateway = "appliance banner password=GwUnparsed0007\n" + gateway_log(extra=extra)
    portal = portal_csv(
        portal_row(message="The upload did not complete within the expected time. "
                   "https://migratelsa1.blob.core.windows.net/x?sv=1&sig=PortalSig0008&se=2"),
        portal_row(time="token=PortalTime0009"))
    vpxd = vpxd_log(fault_msg="Another task is already in progress. AccountKey=VpxdAccountKey0010==",
                    before="vc banner pwd=VpxdUnparsed0011")
    tasks = task_csv(task_row(details="Failed: https://h/x?sv=1&sig=TaskCsvSig0012&se=1"))
    return make_zip(folder / "secrets.zip", [
        ("Logs/GatewayService sig=MemberSig0013.log", gateway), ("portal/events.csv", portal),
        ("vpxd/vpxd-1.log", vpxd), ("tasks.csv", tasks)])


def unusable_secrets_bundle(folder: Path) -> Path:
    return make_zip(folder / "case sig=BundleSig0014.zip",
                    [("../password=MemberPwd0015.log", "x"), ("/token=AbsTok0016.log", "x")])


PLANTED_UNUSABLE = ("BundleSig0014",)  # its member names reach no output even unredacted


def file_texts(*roots: Path) -> dict[str, str]:
    """Every output file as text; Parquet as its rows (its bytes are compressed). Batch's
    .cache.json is left out: it is the store's own index, keyed by the input paths as given."""
    texts = {}
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".cache.json"):
            if path.suffix == ".parquet":
                texts[str(path)] = pl.read_parquet(path).write_ndjson()
            elif path.suffix == ".html":
                texts[str(path)] = page_texts(path.read_text(encoding="utf-8", errors="replace"))
            else:
                texts[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    return texts


def page_texts(html: str) -> str:
    """A page and, after it, the data of its compressed island (page.packed_json), which a
    search of the page's text would not see."""
    island = re.search(r'data-encoding="gzip\+base64">([^<]*)</script>', html)
    data = json.dumps(unpacked_json(island.group(1)), ensure_ascii=False) if island else ""
    return html + "\n" + data


def hits(texts: dict[str, str], markers) -> dict[str, list[str]]:
    return {m: sorted(where for where, text in texts.items() if m in text) for m in markers}


def run_everything(tmp: Path, *flags: str) -> dict[str, str]:
    """analyze (HTML, JSON, --dump-tables, terminal), inspect (JSON and terminal), batch (all of
    OUT), and analyze/batch on an unusable bundle: every text they produced."""
    bundles, out = tmp / "in", tmp / "out"
    bundles.mkdir()
    bundle, unusable = secrets_bundle(bundles), unusable_secrets_bundle(tmp)
    env = cli_env(tmp)
    runs = {
        "analyze": run_cli("analyze", str(bundle), "-o", str(out / "analyze"), "--json",
                           str(out / "analyze" / "a.json"), "--dump-tables", str(out / "dump"),
                           *flags, cwd=tmp, env=env),
        "batch": run_cli("batch", str(bundles), str(unusable), "-o", str(out / "batch"),
                         "--jobs", "1", *flags, cwd=tmp, env=env),
        "analyze-unusable": run_cli("analyze", str(unusable), "-o", str(out / "unusable"), *flags,
                                    cwd=tmp, env=env),
    }
    if not flags:  # inspect always redacts; it has no --no-redact
        runs["inspect-json"] = run_cli("inspect", str(bundle), "--json", "-", cwd=tmp, env=env)
        runs["inspect"] = run_cli("inspect", str(bundle), cwd=tmp, env=env)
    texts = file_texts(out)
    for name, result in runs.items():
        assert "Traceback" not in result.stderr, (name, result.stderr)
        assert result.returncode == (3 if name == "analyze-unusable" else 0), (name, result.stderr)
        texts[f"{name} stdout"] = result.stdout
        texts[f"{name} stderr (terminal)"] = result.stderr
    return texts


def test_planted_secrets_reach_no_output(tmp_path: Path):
    texts = run_everything(tmp_path)
    kinds = {Path(k).suffix for k in texts}
    assert {".html", ".json", ".jsonl", ".csv", ".parquet"} <= kinds
    markers = [*PLANTED, *PLANTED_UNUSABLE, "MemberPwd0015", "AbsTok0016"]
    assert {k: v for k, v in hits(texts, markers).items() if v} == {}
    assert MASK in texts[str(tmp_path / "out" / "analyze" / "a.json")]
    assert "unusable bundle: " in texts["analyze-unusable stderr (terminal)"]


def test_no_redact_shows_every_planted_secret(tmp_path: Path):
    """The other half: each secret sits in a line that really reaches an output."""
    texts = run_everything(tmp_path, "--no-redact")
    found = hits(texts, [*PLANTED, *PLANTED_UNUSABLE])
    assert [m for m, where in found.items() if not where] == []
    html = str(tmp_path / "out" / "analyze" / "secrets.html")
    for marker in ("GwSasSig0001", "GwAccountKey0002", PLANTED_JWT, "GwPassword0005",
                   "GwUnparsed0007", "PortalTime0009", "VpxdUnparsed0011", "MemberSig0013"):
        assert html in found[marker], marker
    assert any("dataset/events" in w for w in found["PortalSig0008"])
    assert any("dataset/vcenter_tasks" in w for w in found["VpxdAccountKey0010"])
    assert "BundleSig0014" in texts["analyze-unusable stderr (terminal)"]


def vm_texts_bundle(folder: Path) -> Path:
    """Secrets where the document's per-VM columns come from: a VM's name in the gateway log and
    the vCenter task export, a task's initiator and details, the host a task ran on."""
    vm = "APP01-pwd=VmName0020"
    tasks = task_csv(task_row(vm=vm, initiator="CONTOSO\\\\svc password=TaskInit0021",
                              details="Failed: token=TaskFault0022"))
    return make_zip(folder / "vmtexts.zip", [("Logs/GatewayService.log", gateway_log(vm=vm)),
                                             ("tasks.csv", tasks)])


@pytest.mark.parametrize("redacted", [True, False], ids=["redact", "no-redact"])
def test_vm_columns_redacted_before_the_document(tmp_path: Path, redacted: bool):
    """The VMs (cycles, tasks, error lines) are redacted as columns in verdicts.decide, not by
    redact_doc: the document, the task table the report draws and the HTML hold no secret."""
    from analyzer import pipeline, report
    analysis = pipeline.analyze(vm_texts_bundle(tmp_path), pipeline.Options(redact=redacted))
    doc_text = json.dumps(analysis.doc)
    tasks_text = analysis.tasks.write_ndjson()
    html = page_texts(report.render(analysis.doc, tasks=analysis.tasks))
    markers = ("VmName0020", "TaskInit0021")
    assert analysis.tasks.height >= 1
    for marker in markers:
        for where, text in (("doc", doc_text), ("tasks", tasks_text), ("html", html)):
            assert (marker in text) is not redacted, (marker, where)
    vm = next(v for v in analysis.doc["vms"] if v["cycles"])
    assert (MASK in vm["vm"]) is redacted and all((MASK in c["id"]) is redacted for c in vm["cycles"])


def test_doc_parts_without_secrets_are_the_inputs_own():
    plain = {"vm": "APP01", "tasks": [{"task_id": "task-1", "method": "m"}], "ids": ("vm-1",)}
    secret = {"text": "pwd=Hunter2", "line": 3}
    doc = {"vms": [plain], "evidence": [secret, "sig=x"]}
    before = copy.deepcopy(doc)
    out = redact_doc(doc)
    assert doc == before
    assert out == every_string_redacted(doc)
    assert out["vms"] is doc["vms"] and out["vms"][0] is plain
    assert out["evidence"] is not doc["evidence"] and out["evidence"][0] is not secret
    assert redact_doc(plain) is plain


def test_doc_dict_subclasses_come_back_as_plain_dicts():
    from collections import OrderedDict
    doc = {"a": OrderedDict(b="plain text", c=[OrderedDict(d="e")])}
    out = redact_doc(doc)
    assert repr(out) == repr(every_string_redacted(doc)) == "{'a': {'b': 'plain text', 'c': [{'d': 'e'}]}}"


def test_texts_are_redacted_alike_in_batches(monkeypatch):
    texts = ["plain", "sig=S1", None, "token=S2 and pwd=S3", "also plain", "sig=S4"]
    whole = redact_texts(texts)
    monkeypatch.setattr(redact_module, "_BATCH", 2)
    assert redact_texts(texts) == whole == ["plain", "sig=" + MASK, None, f"token={MASK} and pwd={MASK}",
                                            "also plain", "sig=" + MASK]
