"""Redaction rules (analyzer/redact.py): every kind of secret goes, ordinary text stays.

End-to-end checks (secrets planted in bundles, every output scanned) are in test_hostile.py.
"""

from __future__ import annotations

import copy

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer import tables
from analyzer.redact import MASK, redact, redact_doc, redact_frame, redact_texts

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
