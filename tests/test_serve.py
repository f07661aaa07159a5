"""`bundle-analyzer serve` end to end: a real server in a subprocess, uploads through its API with
httpx and through its page in Chromium, and Ctrl-C at the end. One server for the module.

The drop page's screenshot and the measured upload-to-report times land in tests/artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from analyzer.serve import Runner
from tests.chromium import needs_chromium

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_bundles" / "case-disk-upload-timeout.zip"
EXPECTED = json.loads(SAMPLE.with_suffix(".expected.json").read_text())["verdicts"]
ARTIFACTS = Path(__file__).parent / "artifacts"
MAX_UPLOAD = 1 << 20  # the sample bundle (330 KB) fits, a 1.5 MiB file does not
HOSTILE_NAME = "../<img src=x onerror=alert(1)>.zip"
WAIT = 120  # seconds for one analysis, on a busy two-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path):
        self.out = tmp / "out"
        self.log = tmp / "serve.log"
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "analyzer", "serve", "--port", str(self.port), "-o",
                 str(self.out), "--jobs", "1", "--max-upload", str(MAX_UPLOAD)],
                cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.base, timeout=30)
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if self.http.get("/").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer within 60 s"
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.process.poll() is None and self.http.get("/").status_code == 200

    def upload(self, name: str, data: bytes, field: str = "bundle") -> httpx.Response:
        return self.http.post("/api/bundles", files={field: (name, data)})

    def wait(self, job_id: str) -> dict:
        deadline = time.monotonic() + WAIT
        while True:
            job = self.http.get(f"/api/bundles/{job_id}").json()
            if job["status"] in ("done", "failed"):
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(30)
        self.http.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("serve"))
    yield running
    running.stop()


# ---------------------------------------------------------------- the API

def test_sample_bundle_gives_its_verdicts_and_report(server):
    times, jobs = [], []
    for _ in range(3):  # three rounds: the median upload-to-report time is reported
        started = time.perf_counter()
        answer = server.upload(SAMPLE.name, SAMPLE.read_bytes())
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["status"] == "queued" and body["url"] == f"/api/bundles/{body['id']}"
        job = server.wait(body["id"])
        times.append(time.perf_counter() - started)
        jobs.append(job)
    job = jobs[0]
    assert job["status"] == "done", job
    assert job["name"] == SAMPLE.name
    summary = job["summary"]
    assert summary["vms"] == 6 and sum(summary["health"].values()) == 6
    assert sorted((v["vm"], v["error"], v["cause"]) for v in summary["verdicts"]) == \
        sorted((v["vm"], v["error"], v["cause"]) for v in EXPECTED)
    assert all(v["severity"] in ("critical", "warning", "info") for v in summary["verdicts"])

    report = server.http.get(job["report"])
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    assert SAMPLE.name in report.text and "<html" in report.text
    assert len({j["report"] for j in jobs}) == 3  # one report per upload
    uploads = list((server.out / ".uploads").iterdir())
    assert uploads == []  # each upload is deleted once analyzed

    ARTIFACTS.mkdir(exist_ok=True)
    median = statistics.median(times)
    (ARTIFACTS / "serve-upload-to-report.txt").write_text(
        f"upload-to-report, {SAMPLE.name}: median {median:.2f} s of "
        f"{', '.join(f'{t:.2f}' for t in times)} s\n")
    print(f"\nupload-to-report median {median:.2f} s ({', '.join(f'{t:.2f}' for t in times)})")


def test_junk_upload_fails_alone_with_one_line(server):
    answer = server.upload("notes.txt", b"this is not a support bundle\n" * 10)
    assert answer.status_code == 202
    job = server.wait(answer.json()["id"])
    assert job["status"] == "failed" and "report" not in job
    assert job["error"].startswith("notes.txt: not a zip, tar, tar.gz or gzip file"), job["error"]
    assert "\n" not in job["error"] and ".uploads" not in job["error"]
    assert server.alive()


def test_over_the_limit_is_413_and_leaves_nothing_behind(server):
    big = os.urandom(MAX_UPLOAD + (MAX_UPLOAD >> 1))
    answer = server.upload("big.zip", big)
    assert answer.status_code == 413
    assert "upload limit" in answer.json()["error"]

    # Without a Content-Length (chunked), the limit is enforced while the body streams in.
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"bundle\"; "
            f"filename=\"big.zip\"\r\nContent-Type: application/zip\r\n\r\n").encode()

    def body():
        yield head
        for start in range(0, len(big), 64 << 10):
            yield big[start:start + (64 << 10)]
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = server.http.post("/api/bundles", content=body(),
                              headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 413
    assert list((server.out / ".uploads").iterdir()) == []  # the partial file is gone
    assert all(j["name"] != "big.zip" for j in server.http.get("/api/bundles").json())
    assert server.alive()


def test_bad_requests_are_400_and_unknown_ids_404(server):
    assert server.upload("a.zip", b"PK", field="file").status_code == 400  # not the field `bundle`
    assert "bundle" in server.upload("a.zip", b"PK", field="file").json()["error"]
    assert server.http.post("/api/bundles", content=b"x").status_code == 400  # not multipart
    assert server.http.get("/api/bundles/0123456789abcdef").status_code == 404
    assert server.http.get("/api/bundles/..%2F..%2Fetc").status_code == 404
    listing = server.http.get("/api/bundles").json()
    first = server.upload("one.txt", b"junk one").json()["id"]
    second = server.upload("two.txt", b"junk two").json()["id"]
    ids = [j["id"] for j in server.http.get("/api/bundles").json()]
    assert ids[:2] == [second, first] and len(ids) == len(listing) + 2  # newest first
    for job_id in (first, second):
        assert server.wait(job_id)["status"] == "failed"
    assert server.alive()


def test_other_sites_cannot_post_or_read_through_a_rebound_name(server):
    other_site = server.http.post("/api/bundles", files={"bundle": ("x.zip", b"PK")},
                                  headers={"origin": "https://example.com"})
    assert other_site.status_code == 403
    rebound = server.http.get("/api/bundles", headers={"host": f"attacker.example:{server.port}"})
    assert rebound.status_code == 400
    assert server.http.get("/api/bundles", headers={"host": f"localhost:{server.port}"}).status_code == 200


def test_a_non_ascii_file_name_comes_back_as_sent(server):
    answer = server.upload("고객 번들.txt", b"junk")
    assert answer.status_code == 202 and answer.json()["name"] == "고객 번들.txt"
    assert server.wait(answer.json()["id"])["error"].startswith("고객 번들.txt: not a zip")


def test_reports_serves_only_what_the_server_wrote(server):
    (server.out / "planted.html").write_text("<p>not written by the server</p>")
    (server.out.parent / "outside.html").write_text("<p>outside</p>")
    done = next(j for j in server.http.get("/api/bundles").json() if j["status"] == "done")
    report_file = done["report"].removeprefix("/reports/")
    for path in ("/reports/planted.html", "/reports/..%2Foutside.html", "/reports/%2E%2E%2Foutside.html",
                 "/reports/..%2F..%2F..%2Fetc%2Fpasswd", "/reports/.uploads", "/reports/%2Fetc%2Fpasswd",
                 f"/reports/{report_file.upper()}", f"/reports/{report_file}%00",
                 f"/reports/..%2Fout%2F{report_file}", "/reports/..%5Coutside.html"):
        answer = server.http.get(path)
        assert answer.status_code == 404, (path, answer.status_code)
        assert "outside" not in answer.text and "not written" not in answer.text
    # a raw request line with ../ (httpx would normalise it away)
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(b"GET /reports/../../outside.html HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Connection: close\r\n\r\n")
        reply = b""
        while chunk := raw.recv(65536):
            reply += chunk
    assert reply.split(b"\r\n", 1)[0].split()[1] in (b"400", b"404"), reply[:200]
    assert b"outside" not in reply
    assert server.http.get(done["report"]).status_code == 200
    assert server.alive()


def test_a_hostile_file_name_is_shown_as_text_and_never_a_path(server):
    before = {p.name for p in server.out.parent.iterdir()}
    answer = server.upload(HOSTILE_NAME, SAMPLE.read_bytes())
    assert answer.status_code == 202
    job = server.wait(answer.json()["id"])
    assert job["status"] == "done" and job["name"] == HOSTILE_NAME
    assert re.fullmatch(r"/reports/[\w.-]+\.html", job["report"]), job["report"]
    assert not job["report"].removeprefix("/reports/").startswith(".")
    assert {p.name for p in server.out.parent.iterdir()} == before  # nothing written beside OUT
    html = server.http.get(job["report"]).text
    assert "<img src=x" not in html  # the name is in the report, escaped
    assert "&lt;img src=x onerror=alert(1)&gt;.zip" in html


def test_a_dying_worker_fails_its_job_alone(tmp_path):
    runner = Runner(tmp_path, workers=1, work=_die_on_crash)
    try:
        crash = runner.add("c" * 16, "crash.zip", tmp_path / "crash.zip", 1)
        fine = runner.add("f" * 16, "fine.zip", tmp_path / "fine.zip", 1)
        deadline = time.monotonic() + WAIT
        while {runner.get(crash.id)["status"], runner.get(fine.id)["status"]} - {"done", "failed"}:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert runner.get(crash.id)["status"] == "failed"
        assert "worker process died" in runner.get(crash.id)["error"]
        assert runner.get(fine.id)["status"] == "done"
        assert runner.report_path("fine.html") == tmp_path / "fine.html"
        assert runner.report_path("crash.html") is None
    finally:
        runner.stop()


def _die_on_crash(upload: str, job_id: str, name: str, out: str, options) -> dict:
    """A stand-in for the analysis that kills its worker process for one bundle."""
    if name == "crash.zip":
        os._exit(1)
    return {"report": "fine.html", "summary": {"vms": 0, "health": {}, "verdicts": []}}


# ---------------------------------------------------------------- the page in Chromium

@pytest.mark.browser
@needs_chromium
def test_the_page_uploads_shows_verdicts_and_opens_the_report(server, browser, tmp_path):
    sample = tmp_path / "page-case.zip"
    shutil.copy(SAMPLE, sample)
    junk = tmp_path / "page-junk.txt"
    junk.write_text("not a bundle at all\n")
    page = browser.new_page()
    errors, requests = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server.base + "/")
    page.wait_for_selector("html[data-ready]")

    page.set_input_files("#files", str(sample))
    job = page.locator("#jobs > li", has=page.locator(".name", has_text="page-case.zip"))
    link = job.locator("a.report")
    link.wait_for(timeout=WAIT * 1000)
    assert job.get_attribute("data-status") == "done"
    assert not job.locator("progress").is_visible()  # the bar goes once the analysis is done
    assert job.locator(".health").inner_text().startswith("6 VMs")
    verdicts = job.locator("ul.verdicts > li").all_inner_texts()
    assert len(verdicts) == len(EXPECTED)
    assert all("disk_upload_timed_out" in v and "cache_storage_unreachable" in v for v in verdicts)

    page.set_input_files("#files", str(junk))
    failed = page.locator("#jobs > li", has=page.locator(".name", has_text="page-junk.txt"))
    failed.locator(".error").wait_for(timeout=WAIT * 1000)
    assert failed.get_attribute("data-status") == "failed"
    assert failed.locator(".error").inner_text().startswith("page-junk.txt: not a zip")

    # Jobs from the API tests are listed too: the hostile name is text, not an element.
    assert page.locator("#jobs img").count() == 0
    if page.locator("#jobs .name", has_text="onerror").count():
        assert page.locator("#jobs .name", has_text="onerror").first.inner_text() == HOSTILE_NAME
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-drop-page.png"), full_page=True)

    link.click()
    page.wait_for_url(re.compile(r"/reports/page-case-[0-9a-f]+\.html$"))
    page.wait_for_selector("html[data-ready]")
    assert "page-case.zip" in page.title()
    assert errors == []
    assert all(url.startswith(server.base + "/") for url in requests), requests
    page.close()


@pytest.mark.browser
@needs_chromium
def test_the_file_input_is_labelled_and_reachable_by_keyboard(server, browser):
    page = browser.new_page()
    page.goto(server.base + "/")
    page.wait_for_selector("html[data-ready]")
    assert page.get_by_label("or choose them:").get_attribute("type") == "file"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "files"
    page.close()


# ---------------------------------------------------------------- Ctrl-C (last: it ends the server)

def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(c) for c in (task / "children").read_text().split())
    return found


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_ctrl_c_stops_cleanly_even_with_a_bundle_in_flight(server):
    answer = server.upload(SAMPLE.name, SAMPLE.read_bytes())
    assert answer.status_code == 202
    workers = _children(server.process.pid)
    assert workers  # the analysis runs in a worker process
    started = time.monotonic()
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(30) == 0
    assert time.monotonic() - started < 15
    log = server.log.read_text()
    assert "Traceback" not in log and "Error" not in log, log
    assert log.rstrip().endswith("stopped")
    assert list((server.out / ".uploads").iterdir()) == []
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in workers):
        assert time.monotonic() < deadline, "worker processes outlived the server"
        time.sleep(0.1)
