"""`bundle-analyzer serve`: a local page to drop bundles on, and the JSON API behind it (OUTPUT.md).

An upload streams into OUT/.uploads/<job id><archive suffix>: the name on disk is ours, the name
the browser sent is only shown (redacted, never used as a path). Each bundle is analyzed in a
worker process by `batch.analyze_bundle`, which writes OUT/<safe stem>-<job id>.html; the upload is
deleted once analyzed. Jobs live in this process's memory only: a restarted server has forgotten
them (their reports stay in OUT, but /reports/ serves only what this server wrote).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import itertools
import multiprocessing
import os
import queue
import re
import secrets
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from analyzer.batch import ARCHIVE_SUFFIXES, _ignore_sigint, analyze_bundle, safe_stem
from analyzer.errors import UserError
from analyzer.output import prepare_folder, write_atomic
from analyzer.pipeline import Options
from analyzer.terminal import one_line

DEFAULT_MAX_UPLOAD = 2 << 30
UPLOADS = ".uploads"
FIELD = b"bundle"
MULTIPART_OVERHEAD = 64 << 10  # boundaries and part headers around the file itself
HEALTH = ("critical", "warning", "healthy", "unknown")
PAGE = Path(__file__).parent / "serve_static" / "drop.html"
# The page needs nothing but itself and this server's API.
PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "connect-src 'self'; img-src data:; form-action 'none'; base-uri 'none'; "
            "frame-ancestors 'none'")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


class ServeError(UserError):
    """The server cannot start (the port is taken). One line naming the fix."""


# ---------------------------------------------------------------- the work of one job

def _warm() -> None:
    """Import the pipeline once in a fresh worker, so that the first drop does not wait for it."""
    import analyzer.pipeline  # noqa: F401
    import analyzer.report  # noqa: F401


def summarize(doc: dict) -> dict:
    """What the page shows of an analysis: health counts and one line per verdict."""
    health = Counter(vm.get("health") or "unknown" for vm in doc.get("vms", []))
    keys = ("severity", "vm", "error", "cause", "confidence", "title")
    return {"vms": len(doc.get("vms", [])), "health": {h: health.get(h, 0) for h in HEALTH},
            "verdicts": [{k: v.get(k) for k in keys} for v in doc.get("verdicts", [])]}


def analyze_upload(upload: str, job_id: str, name: str, out: str, options: Options) -> dict:
    """In a worker process: analyze one uploaded bundle and write its report (temp file, rename).

    Returns {"report", "summary", "seconds"} or {"error": one line}.
    """
    result = analyze_bundle(upload, job_id, options, name=name, exports=False)
    if result.error:  # the message names our file on disk; the user knows theirs
        return {"error": result.error.replace(upload, name).replace(Path(upload).name, name)}
    report = f"{safe_stem(name)}-{job_id}.html"
    write_atomic(Path(out) / report, result.html or "")
    return {"report": report, "summary": summarize(result.doc or {}),
            "seconds": round(result.seconds, 3)}


# ---------------------------------------------------------------- jobs and workers

@dataclass
class Job:
    id: str
    name: str  # as uploaded, control characters removed, redacted: shown, never a path
    upload: Path
    size: int
    seq: int
    status: str = "queued"  # queued | running | done | failed
    report: str | None = None  # a file name in OUT, chosen by analyze_upload
    summary: dict | None = None
    error: str | None = None
    seconds: float | None = None
    started: float | None = None

    def as_json(self) -> dict:
        doc = {"id": self.id, "name": self.name, "status": self.status, "size": self.size,
               "url": f"/api/bundles/{self.id}"}
        if self.status == "running" and self.started is not None:
            doc["running_seconds"] = round(time.monotonic() - self.started, 1)
        if self.status == "done":
            doc.update(report=f"/reports/{self.report}", summary=self.summary,
                       seconds=self.seconds)
        if self.status == "failed":
            doc["error"] = self.error
        return doc


@dataclass
class Runner:
    """The jobs (in memory, under a lock) and the worker processes that analyze them.

    One thread per worker takes a job from the queue and waits for its process, so a job is
    "running" exactly while a process works on it. A worker that dies breaks the whole pool:
    the pool is replaced and the jobs it held are tried once more, so only the job that kills
    its worker twice fails.
    """

    out: Path
    workers: int
    options: Options = field(default_factory=Options)
    work: object = analyze_upload  # a top-level function (it is pickled to the workers)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.reports: dict[str, str] = {}  # report file name -> job id
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.stopping = False
        self.seq = itertools.count()
        self.pool = self._new_pool()
        self.threads = [threading.Thread(target=self._take_jobs, name=f"serve-worker-{i}",
                                         daemon=True) for i in range(self.workers)]
        for thread in self.threads:
            thread.start()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        # spawn, not fork: polars' thread pool does not survive a fork (as in batch).
        return cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_ignore_sigint)

    def add(self, job_id: str, name: str, upload: Path, size: int) -> Job:
        job = Job(job_id, name, upload, size, next(self.seq))
        with self.lock:
            self.jobs[job.id] = job
        self.queue.put(job)
        return job

    def get(self, job_id: str) -> dict | None:
        with self.lock:
            job = self.jobs.get(job_id)
            return job.as_json() if job else None

    def listing(self) -> list[dict]:
        with self.lock:
            return [j.as_json() for j in sorted(self.jobs.values(), key=lambda j: -j.seq)]

    def report_path(self, file: str) -> Path | None:
        """The report this server wrote under that name; None for any other name."""
        with self.lock:
            job = self.jobs.get(self.reports.get(file, ""))
            return self.out / job.report if job and job.report == file else None

    def _take_jobs(self) -> None:
        with contextlib.suppress(Exception):
            self.pool.submit(_warm).result()
        while (job := self.queue.get()) is not None:
            self._run(job)

    def _run(self, job: Job) -> None:
        with self.lock:
            job.status, job.started = "running", time.monotonic()
        outcome = {"error": "the server stopped before this bundle was analyzed"}
        try:
            for _ in range(2):  # a second try after the pool broke
                pool = self.pool
                try:
                    outcome = pool.submit(self.work, str(job.upload), job.id, job.name,
                                          str(self.out), self.options).result()
                    break
                except cf.process.BrokenProcessPool:
                    if self.stopping:
                        break
                    self._replace(pool)
                    outcome = {"error": "the worker process died while analyzing this bundle "
                                        "(out of memory?)"}
        except Exception as exc:  # the pool is shut down, or a result that cannot be pickled
            if not self.stopping:
                outcome = {"error": one_line(f"{type(exc).__name__}: {exc}")}
        finally:
            job.upload.unlink(missing_ok=True)
        with self.lock:
            job.seconds = outcome.get("seconds")
            if outcome.get("report"):
                job.status, job.report, job.summary = "done", outcome["report"], outcome["summary"]
                self.reports[job.report] = job.id
            else:
                job.status, job.error = "failed", outcome.get("error") or "failed without a message"

    def _replace(self, broken: cf.ProcessPoolExecutor) -> None:
        with self.lock:
            if self.pool is broken and not self.stopping:
                self.pool = self._new_pool()
        broken.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        """Stop the workers now (an analysis in flight is abandoned) and drop unread uploads."""
        with self.lock:
            if self.stopping:
                return
            self.stopping = True
            pool = self.pool
            waiting = [j for j in self.jobs.values() if j.status in ("queued", "running")]
        for _ in self.threads:
            self.queue.put(None)
        processes = list((getattr(pool, "_processes", None) or {}).values())
        for process in processes:
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(5)
        for job in waiting:
            job.upload.unlink(missing_ok=True)


# ---------------------------------------------------------------- receiving an upload

def display_name(raw: str, redact: bool = True) -> str:
    """The uploaded file's name as the page and report show it: no control characters, bounded."""
    name = _CONTROLS.sub(" ", raw).strip()[:200] or "bundle"
    if redact:
        from analyzer.redact import redact as redact_text

        name = redact_text(name)
    return name


def archive_suffix(name: str) -> str:
    """The archive suffix of a name (".tar.gz", ".zip", ...), or "" (the bundle is sniffed anyway)."""
    lower = name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), "")


class _Receiver:
    """python-multipart callbacks writing the `bundle` file part to disk as it arrives."""

    def __init__(self, folder: Path, job_id: str, limit: int):
        self.folder, self.job_id, self.limit = folder, job_id, limit
        self.path: Path | None = None
        self.filename: str | None = None
        self.size = 0
        self.too_large = False
        self.extra_files = 0
        self._file = None
        self._writing = False
        self._header = b""
        self._value = b""
        self._disposition = b""

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
                "on_part_end": self._part_end}

    def _part_begin(self) -> None:
        self._disposition = b""
        self._writing = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header = self._value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._disposition)
        if params.get(b"name") != FIELD or b"filename" not in params:
            return  # another field: its data is skipped
        if self._file is not None:
            self.extra_files += 1
            return
        self.filename = params[b"filename"].decode("utf-8", "replace")
        self.path = self.folder / f"{self.job_id}{archive_suffix(self.filename)}"
        self._file = open(self.path, "xb")
        self._writing = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._writing or self.too_large:
            return
        self.size += end - start
        if self.size > self.limit:
            self.too_large = True
            return
        self._file.write(data[start:end])

    def _part_end(self) -> None:
        self._writing = False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def discard(self) -> None:
        self.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


# ---------------------------------------------------------------- the web app

def drop_page_in(lang: str | None) -> str:
    """The drop page in the server's --lang: its words, and those its script shows, from the catalogue."""
    from jinja2 import Environment, StrictUndefined

    from analyzer.i18n import DEFAULT_LANG, messages
    from analyzer.report.page import page_words, script_json

    m = messages(lang or DEFAULT_LANG)
    words = script_json({"text": m.script("serve"), "health": m.script("health"), "severity": m.script("severity")})
    template = Environment(autoescape=True, undefined=StrictUndefined).from_string(PAGE.read_text(encoding="utf-8"))
    return template.render(words=words, **page_words(m))


def create_app(runner: Runner, max_upload: int = DEFAULT_MAX_UPLOAD,
               allowed_hosts: list[str] | None = None) -> Starlette:
    uploads = runner.out / UPLOADS
    uploads.mkdir(parents=True, exist_ok=True)
    page = drop_page_in(runner.options.lang).replace("__MAX_UPLOAD__", str(max_upload))
    too_large = f"the bundle is larger than this server's upload limit ({_size(max_upload)}; " \
                "start it with a larger --max-upload)"

    async def drop_page(request: Request) -> Response:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP,
                                           "Cache-Control": "no-store"})

    async def post_bundle(request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return _error(403, "uploads are accepted from this server's own page only")
        kind, params = parse_options_header(request.headers.get("content-type"))
        if kind != b"multipart/form-data" or not params.get(b"boundary"):
            return _error(400, "send multipart/form-data with the bundle file in the field 'bundle'")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_upload + MULTIPART_OVERHEAD:
            return _error(413, too_large)
        job_id = secrets.token_hex(8)
        receiver = _Receiver(uploads, job_id, max_upload)
        parser = MultipartParser(params[b"boundary"], receiver.callbacks())
        try:
            async for chunk in request.stream():
                await run_in_threadpool(parser.write, chunk)  # the file writes stay off the loop
                if receiver.too_large:
                    break
            else:
                parser.finalize()
        except ClientDisconnect:
            receiver.discard()
            return Response(status_code=400)
        except FormParserError as exc:
            receiver.discard()
            return _error(400, one_line(f"the upload is not valid multipart/form-data: {exc}"))
        except OSError as exc:
            receiver.discard()
            return _error(507, one_line(f"the upload could not be stored: {exc.strerror or exc}"))
        finally:
            receiver.close()
        if receiver.too_large:
            receiver.discard()
            return _error(413, too_large)
        if receiver.filename is None:
            return _error(400, "no file in the field 'bundle': send the bundle as "
                               "multipart/form-data, field 'bundle'")
        if receiver.extra_files:
            receiver.discard()
            return _error(400, "one bundle per request: send each file in a request of its own")
        job = runner.add(job_id, display_name(receiver.filename, runner.options.redact),
                         receiver.path, receiver.size)
        return JSONResponse({"id": job.id, "name": job.name, "status": "queued",
                             "url": f"/api/bundles/{job.id}"}, status_code=202,
                            headers={"Location": f"/api/bundles/{job.id}"})

    async def list_bundles(request: Request) -> Response:
        return JSONResponse(runner.listing())

    async def get_bundle(request: Request) -> Response:
        found = runner.get(request.path_params["id"])
        if found is None:
            return _error(404, "no such job on this server (jobs are kept in memory: a restart "
                               "forgets them)")
        return JSONResponse(found)

    async def get_report(request: Request) -> Response:
        path = runner.report_path(request.path_params["file"])
        if path is None or not path.is_file():
            return _error(404, "no such report on this server")
        return FileResponse(path, media_type="text/html; charset=utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        runner.stop()

    routes = [
        Route("/", drop_page),
        Route("/api/bundles", post_bundle, methods=["POST"]),
        Route("/api/bundles", list_bundles, methods=["GET"]),
        Route("/api/bundles/{id}", get_bundle, methods=["GET"]),
        Route("/reports/{file}", get_report, methods=["GET"]),
    ]
    # Behind a loopback bind, answer only to loopback names: a web page the user visits cannot
    # reach reports through a DNS name rebound to 127.0.0.1.
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] \
        if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ServeError(f"cannot listen on {host} port {port}: {reason} — pick "
                         "another --port (or --host)") from None


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) - 1)


def run(host: str, port: int, out: Path, workers: int, max_upload: int, options: Options,
        say=print) -> None:
    """Serve until Ctrl-C (or SIGTERM); then stop the workers and return."""
    import uvicorn

    out = Path(out)
    sock = _bind(host, port)  # first: a port in use leaves no folder behind
    try:
        prepare_folder(out / UPLOADS, "-o", out)
    except BaseException:
        sock.close()
        raise
    runner = Runner(out.resolve(), workers, options)
    allowed = [*LOOPBACK, "[::1]"] if host in LOOPBACK else None
    app = create_app(runner, max_upload, allowed)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=3)
    shown_host = f"[{host}]" if ":" in host else host
    say(f"Drop bundles on http://{shown_host}:{sock.getsockname()[1]}/  (reports in {out}, "
        f"{workers} worker{'s' if workers > 1 else ''}; Ctrl-C stops)")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stops cleanly, then raises the signal it caught again
        pass
    finally:
        runner.stop()
        sock.close()
    say("stopped")
