#!/usr/bin/env python3
"""Independent-client conformance test for `parley-sandbox`.

The sandbox emulates Amazon Connect (chat), Connect Participant, AWS End User
Messaging Social (WhatsApp) and Transcribe Streaming so that the real AWS SDK
clients can talk to it by endpoint override. The project's own tests drive it
with the Rust SDKs; this script drives it with *other* clients — boto3 /
botocore (and their service models, which are generated from the same Smithy
models as every AWS SDK), raw HTTP, and awslabs' `amazon-transcribe` — and
checks it against what those models and the API references say.

Usage:
    <venv>/bin/python tests/conformance/sandbox_conformance.py [SANDBOX_BIN]

SANDBOX_BIN defaults to $PARLEY_SANDBOX_BIN. The script starts the binary on a
free loopback port, runs every check (each reported as one PASS/FAIL/SKIP line
with a one-line reason, plus indented evidence for failures), kills the
sandbox, prints a summary and exits non-zero if any check failed.

Environment:
    PARLEY_SANDBOX_BIN                 the sandbox binary (if no argv[1])
    PARLEY_CONFORMANCE_REQUIRE_SDK=1   fail (not skip) when amazon-transcribe
                                       is not installed
    PARLEY_CONFORMANCE_TIMEOUT         overall watchdog, seconds (default 90)

Everything listens on and talks to loopback only; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import http.client
import ipaddress
import json
import math
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
import zlib

try:
    import boto3
    import botocore.session
    from botocore.config import Config
    from botocore.eventstream import EventStreamBuffer
    from botocore.exceptions import ClientError
except ImportError as e:  # pragma: no cover - environment problem
    print(f"FAIL  harness.imports — boto3/botocore not importable: {e}")
    print("conformance: 0 passed, 1 failed")
    sys.exit(2)

REGION = "us-east-1"
INSTANCE_ID = "11111111-2222-4333-8444-555555555555"
CONTACT_FLOW_ID = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
STREAMING_TOPIC = "arn:aws:sns:us-east-1:123456789012:parley-chat-streaming"
ORIGINATION = "phone-number-id-0123456789abcdef0123456789abcdef"
META_API_VERSION = "v20.0"
CHAT_CONTENT_TYPES = [
    "text/plain",
    "text/markdown",
    "application/json",
    "application/vnd.amazonaws.connect.message.interactive.response",
]
TYPING = "application/vnd.amazonaws.connect.event.typing"
DELIVERED = "application/vnd.amazonaws.connect.event.message.delivered"
# Per the Connect Participant model (ChatContent max 16384) and the API
# reference: "Maximum of 16,384 bytes for all content types".
MAX_CHAT_CONTENT_BYTES = 16_384
# Connect Participant models ISO8601Datetime as a string documented as
# "yyyy-MM-ddThh:mm:ss.SSSZ. For example, 2019-11-08T02:41:28.172Z".
MS_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ANY_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")

# Errors every AWS service may return without modelling them (the AWS
# "Common Errors" list, plus the protocol-level errors the AWS front ends
# send for requests they cannot parse or route).
COMMON_ERRORS = {
    "AccessDeniedException",
    "IncompleteSignature",
    "InternalFailure",
    "InvalidAction",
    "InvalidClientTokenId",
    "NotAuthorized",
    "OptInRequired",
    "RequestExpired",
    "ServiceUnavailable",
    "ThrottlingException",
    "ValidationError",
    "UnrecognizedClientException",
    "MissingAuthenticationTokenException",
    "SerializationException",
    "UnknownOperationException",
}
WATCHDOG_S = float(os.environ.get("PARLEY_CONFORMANCE_TIMEOUT", "90"))
HTTP_TIMEOUT_S = 10.0
SDK_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


class Fail(Exception):
    """A check failed: `reason` is the one-line reason, `evidence` extra lines."""

    def __init__(self, reason: str, evidence=None):
        super().__init__(reason)
        self.reason = reason
        self.evidence = [e for e in (evidence or []) if e]


class Skip(Exception):
    """A check could not run for a reason outside the sandbox."""


RESULTS: list[tuple[str, str, str]] = []
_print_lock = threading.Lock()


def one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def report(status: str, name: str, reason: str, evidence=()):
    RESULTS.append((status, name, reason))
    with _print_lock:
        print(f"{status:<5} {name} — {one_line(reason)}", flush=True)
        for line in evidence:
            print(f"        {one_line(line, 600)}", flush=True)


def run_check(name: str, fn, *args):
    try:
        reason = fn(*args)
        report("PASS", name, reason or "ok")
    except Fail as f:
        report("FAIL", name, f.reason, f.evidence)
    except Skip as s:
        report("SKIP", name, str(s))
    except Exception as e:  # an unexpected client-side exception is a failure
        tb = traceback.extract_tb(e.__traceback__)
        where = f" (at line {tb[-1].lineno})" if tb else ""
        report("FAIL", name, f"unexpected {type(e).__name__}: {e}{where}")


# --------------------------------------------------------------------------
# The sandbox process
# --------------------------------------------------------------------------


class SandboxProcess:
    def __init__(self, binary: str):
        self.binary = binary
        self.proc: subprocess.Popen | None = None
        self.log = None
        self.port: int | None = None

    @staticmethod
    def _free_port() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def start(self, wait_s: float = 20.0) -> int:
        last = "never started"
        for _attempt in range(3):
            port = self._free_port()
            self.log = tempfile.TemporaryFile()
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
            env.pop("PARLEY_LISTEN", None)
            self.proc = subprocess.Popen(
                [self.binary, "--listen", f"127.0.0.1:{port}"],
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last = f"exited with {self.proc.returncode}: {self.output()[-300:]}"
                    break
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    self.port = port
                    return port
                except OSError:
                    time.sleep(0.05)
            else:
                last = f"did not accept connections on 127.0.0.1:{port} within {wait_s:.0f}s"
            self.stop()
        raise RuntimeError(last)

    def output(self) -> str:
        if not self.log:
            return ""
        try:
            self.log.seek(0)
            return self.log.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.terminate()
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
        except OSError:
            pass


# --------------------------------------------------------------------------
# Recording every API response (boto3 and raw) for the model checks
# --------------------------------------------------------------------------


class Rec:
    """One HTTP response to an API operation."""

    def __init__(self, service, op, status, headers, body, via):
        self.service = service
        self.op = op
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body or b""
        self.via = via
        self.at = time.time()

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8")) if self.body else None
        except (UnicodeDecodeError, ValueError):
            return None

    def header(self, name):
        return self.headers.get(name.lower())

    def describe(self) -> str:
        keep = ["content-type", "x-amzn-errortype", "x-amzn-requestid", "x-amzn-request-id"]
        hs = ", ".join(f"{h}={self.headers.get(h, '∅')}" for h in keep)
        body = self.body[:240].decode("utf-8", "replace")
        return f"{self.service}.{self.op} → HTTP {self.status}; {hs}; body={body!r}"


RECORDS: list[Rec] = []


def _after_call(http_response=None, model=None, **_kwargs):
    if http_response is None or model is None:
        return
    RECORDS.append(
        Rec(
            model.service_model.service_name,
            model.name,
            http_response.status_code,
            dict(http_response.headers),
            http_response.content,
            "boto3",
        )
    )


class Api:
    """Result of one boto3 call."""

    def __init__(self, out, err, rec):
        self.out = out
        self.err = err
        self.rec = rec

    @property
    def ok(self):
        return self.err is None

    @property
    def code(self):
        return self.err.response.get("Error", {}).get("Code") if self.err else None

    @property
    def status(self):
        return self.rec.status if self.rec else None

    def raw(self):
        return self.rec.json() if self.rec else None


def api(client, method, **kwargs) -> Api:
    before = len(RECORDS)
    try:
        out, err = getattr(client, method)(**kwargs), None
    except ClientError as e:
        out, err = None, e
    rec = RECORDS[-1] if len(RECORDS) > before else None
    return Api(out, err, rec)


def require_ok(result: Api, what: str):
    if not result.ok:
        raise Fail(
            f"{what} failed: {result.code} (HTTP {result.status})",
            [result.rec.describe() if result.rec else None],
        )
    return result.out


# --------------------------------------------------------------------------
# Raw HTTP (loopback only)
# --------------------------------------------------------------------------

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def raw_http(port, method, path, body=None, headers=None, service=None, op=None, host="127.0.0.1"):
    if host not in LOOPBACK_HOSTS:
        raise Fail(f"refusing to contact non-loopback host {host!r}")
    conn = http.client.HTTPConnection(host, port, timeout=HTTP_TIMEOUT_S)
    try:
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        rec = Rec(service or "raw", op or path, resp.status, dict(resp.getheaders()), data, "raw")
    finally:
        conn.close()
    if service:
        RECORDS.append(rec)
    return rec


def raw_url(url, method="GET", body=None, headers=None):
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "http" or parsed.hostname not in LOOPBACK_HOSTS:
        raise Fail(f"URL {url!r} is not plain http on loopback; not fetched")
    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    return raw_http(parsed.port or 80, method, path, body, headers, host=parsed.hostname)


# --------------------------------------------------------------------------
# botocore service models
# --------------------------------------------------------------------------

_SESSION = botocore.session.get_session()
MODELS = {name: _SESSION.get_service_model(name) for name in ("connect", "connectparticipant", "socialmessaging")}


def modeled_errors(service, op):
    return {s.name: s for s in MODELS[service].operation_model(op).error_shapes}


def error_shape(service, code):
    try:
        shape = MODELS[service].shape_for(code)
    except Exception:
        return None
    return shape if shape.metadata.get("exception") or shape.metadata.get("error") else None


def message_member(service, code):
    """The error message member name the model gives this error, if any."""
    shape = error_shape(service, code)
    if shape is None:
        return None
    for name, member in shape.members.items():
        if name.lower() == "message":
            return member.serialization.get("name", name)
    return None


def service_message_member(service):
    """The message member name most of the service's error shapes use
    (`Message` for connect and connectparticipant, `message` for
    socialmessaging): the one expected even for an error it does not model."""
    model = MODELS[service]
    counts: dict[str, int] = {}
    for op in model.operation_names:
        for shape in model.operation_model(op).error_shapes:
            member = message_member(service, shape.name)
            if member:
                counts[member] = counts.get(member, 0) + 1
    return max(counts, key=counts.get) if counts else "message"


def validate_shape(shape, value, path, problems):
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected object, got {type(value).__name__}")
            return
        body_members = {}
        for name, member in shape.members.items():
            if member.serialization.get("location"):
                continue
            body_members[member.serialization.get("name", name)] = member
        for name in shape.required_members:
            member = shape.members[name]
            if member.serialization.get("location"):
                continue
            key = member.serialization.get("name", name)
            if value.get(key) is None:
                problems.append(f"{path}.{key}: required member missing")
        for key, v in value.items():
            if key in body_members and v is not None:
                validate_shape(body_members[key], v, f"{path}.{key}", problems)
    elif t == "list":
        if not isinstance(value, list):
            problems.append(f"{path}: expected array, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            validate_shape(shape.member, item, f"{path}[{i}]", problems)
    elif t == "map":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected map object, got {type(value).__name__}")
            return
        for k, v in value.items():
            validate_shape(shape.value, v, f"{path}[{k!r}]", problems)
    elif t == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: expected string, got {type(value).__name__}")
            return
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of the modeled values {shape.enum}")
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if lo is not None and len(value) < lo:
            problems.append(f"{path}: length {len(value)} < min {lo}")
        if hi is not None and len(value) > hi:
            problems.append(f"{path}: length {len(value)} > max {hi}")
    elif t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: expected integer, got {value!r}")
    elif t in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"{path}: expected number, got {value!r}")
    elif t == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{path}: expected boolean, got {value!r}")
    elif t == "timestamp":
        fmt = shape.serialization.get("timestampFormat") or "unixTimestamp"
        if fmt == "unixTimestamp":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                problems.append(
                    f"{path}: REST-JSON timestamps are epoch-seconds numbers by default, got {value!r}"
                )
        elif not isinstance(value, str) or not ANY_ISO.match(value):
            problems.append(f"{path}: expected {fmt} timestamp string, got {value!r}")
    elif t == "blob":
        if not isinstance(value, str):
            problems.append(f"{path}: expected base64 string, got {type(value).__name__}")


def success_problems(rec: Rec) -> list[str]:
    problems = []
    op = MODELS[rec.service].operation_model(rec.op)
    ctype = rec.header("content-type") or ""
    data = rec.json()
    if rec.body and data is None:
        return [f"{rec.op}: body is not JSON: {rec.body[:80]!r}"]
    if rec.body and "json" not in ctype:
        problems.append(f"{rec.op}: content-type {ctype!r} is not JSON")
    if op.output_shape is not None:
        sub = []
        validate_shape(op.output_shape, data if data is not None else {}, rec.op, sub)
        problems += sub
    return problems


def error_code_of(rec: Rec):
    header = rec.header("x-amzn-errortype")
    if header:
        return header.split(":", 1)[0], True
    data = rec.json()
    if isinstance(data, dict):
        code = data.get("__type") or data.get("code")
        if code:
            return str(code).rsplit("#", 1)[-1], False
    return str(rec.status), False


def error_problems(rec: Rec) -> dict[str, list[str]]:
    """Problems of one error response, by category."""
    out = {"code": [], "member": [], "status": []}
    code, from_header = error_code_of(rec)
    modeled = modeled_errors(rec.service, rec.op)
    if not from_header:
        out["code"].append(f"{rec.op} HTTP {rec.status}: no x-amzn-ErrorType header (code would be {code!r})")
    elif code not in modeled and code not in COMMON_ERRORS:
        out["code"].append(
            f"{rec.op}: {code} is not a modeled error of {rec.op} (modeled: {', '.join(sorted(modeled))})"
        )
    shape = modeled.get(code) or error_shape(rec.service, code)
    if shape is not None:
        want_status = shape.metadata.get("error", {}).get("httpStatusCode")
        if want_status and want_status != rec.status:
            out["status"].append(f"{rec.op}: {code} with HTTP {rec.status}, model says {want_status}")
    data = rec.json()
    if not isinstance(data, dict):
        out["member"].append(
            f"{rec.op} HTTP {rec.status}: body is not a JSON object "
            f"(content-type {rec.header('content-type')!r}): {rec.body[:80]!r}"
        )
    else:
        want = message_member(rec.service, code) or service_message_member(rec.service)
        if want not in data:
            have = [k for k in data if k.lower() == "message"]
            out["member"].append(
                f"{rec.op}: {code} body has {have or list(data)} but the model's member is {want!r}"
            )
    return out


def is_api_error(rec: Rec) -> bool:
    return rec.status >= 400


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def parse_iso(text: str) -> float:
    m = ANY_ISO.match(text or "")
    if not m:
        raise ValueError(f"not ISO 8601: {text!r}")
    t = text.replace("Z", "+00:00")
    return dt.datetime.fromisoformat(t).timestamp()


def tiny_png() -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00\x10\x80\xf0"))
        + chunk(b"IEND", b"")
    )


def json_content(size: int) -> str:
    """A JSON object of exactly `size` bytes (ASCII)."""
    skeleton = '{"text":""}'
    return '{"text":"' + "a" * (size - len(skeleton)) + '"}'


def content_of_size(content_type: str, size: int) -> str:
    if content_type in ("text/plain", "text/markdown"):
        return "a" * size
    return json_content(size)


# ---- DTMF audio (the sandbox's "recognizer" decodes DTMF into words) ----

DTMF_ROWS = [697.0, 770.0, 852.0, 941.0]
DTMF_COLS = [1209.0, 1336.0, 1477.0]
DTMF_KEYS = ["123", "456", "789", "*0#"]
DTMF_WORDS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
    "6": "six", "7": "seven", "8": "eight", "9": "nine", "*": "star", "#": "hash",
}


def dtmf_pcm(keys: str, rate: int = 16_000) -> bytes:
    """100 ms per tone, 100 ms of silence between; 16-bit LE mono PCM."""
    samples = []
    n = rate // 10
    for key in keys:
        r, c = next((r, row.index(key)) for r, row in enumerate(DTMF_KEYS) if key in row)
        for i in range(n):
            t = i / rate
            v = 0.3 * (math.sin(2 * math.pi * DTMF_ROWS[r] * t) + math.sin(2 * math.pi * DTMF_COLS[c] * t))
            samples.append(int(v * 32767))
        samples.extend([0] * n)
    return struct.pack(f"<{len(samples)}h", *samples)


# ---- event stream framing (encoder written here; decoder is botocore's) ----


def es_message(headers, payload: bytes) -> bytes:
    encoded = b""
    for name, kind, value in headers:
        nb = name.encode()
        encoded += bytes([len(nb)]) + nb
        if kind == "string":
            vb = value.encode()
            encoded += b"\x07" + struct.pack(">H", len(vb)) + vb
        elif kind == "bytes":
            encoded += b"\x06" + struct.pack(">H", len(value)) + value
        elif kind == "timestamp":
            encoded += b"\x08" + struct.pack(">q", int(value))
        else:
            raise ValueError(kind)
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message) & 0xFFFFFFFF)


def signed_frame(inner: bytes) -> bytes:
    # The sandbox does not verify event signatures; the frame is shaped as
    # the SDKs send it (a :date and a :chunk-signature around the event).
    return es_message(
        [(":date", "timestamp", int(time.time() * 1000)), (":chunk-signature", "bytes", os.urandom(32))],
        inner,
    )


def audio_frames(pcm: bytes, chunk: int = 3200) -> list[bytes]:
    frames = []
    for i in range(0, len(pcm), chunk):
        inner = es_message(
            [
                (":content-type", "string", "application/octet-stream"),
                (":event-type", "string", "AudioEvent"),
                (":message-type", "string", "event"),
            ],
            pcm[i : i + chunk],
        )
        frames.append(signed_frame(inner))
    frames.append(signed_frame(b""))  # end of audio
    return frames


def transcribe_raw(port, extra_headers: dict, frames: list[bytes]):
    """POST /stream-transcription over HTTP/1.1 with a chunked event-stream
    body; returns (status, headers, decoded event-stream messages | None, raw body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_S)
    try:
        headers = {
            "Host": f"127.0.0.1:{port}",
            "Content-Type": "application/vnd.amazon.eventstream",
            "X-Amz-Content-Sha256": "STREAMING-AWS4-HMAC-SHA256-EVENTS",
            "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"
            + time.strftime("%Y%m%d", time.gmtime())
            + f"/{REGION}/transcribe/aws4_request, SignedHeaders=host, Signature=" + "0" * 64,
            "Transfer-Encoding": "chunked",
        }
        headers.update(extra_headers)
        head = "POST /stream-transcription HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall((head + "\r\n").encode())
        try:
            for frame in frames:
                sock.sendall(b"%x\r\n" % len(frame) + frame + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # refused early; read the response anyway
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        body = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        sock.close()
    messages = None
    if "eventstream" in hdrs.get("content-type", ""):
        buf = EventStreamBuffer()
        buf.add_data(body)
        messages = list(buf)  # raises on a bad prelude/CRC
    return resp.status, hdrs, messages, body


def transcript_events(messages):
    events, exceptions = [], []
    for m in messages or []:
        kind = m.headers.get(":message-type")
        if kind == "event" and m.headers.get(":event-type") == "TranscriptEvent":
            events.append(json.loads(m.payload.decode()))
        elif kind in ("exception", "error"):
            exceptions.append((m.headers.get(":exception-type") or m.headers.get(":error-code"), m.payload[:200]))
    return events, exceptions


def final_results(events):
    out = []
    for e in events:
        for r in e.get("Transcript", {}).get("Results", []):
            if not r.get("IsPartial"):
                out.append(r)
    return out


def check_result_shape(result, problems, where):
    """Transcribe Streaming's Result shape (from the service's Smithy model)."""
    types = {
        "ResultId": str, "StartTime": (int, float), "EndTime": (int, float),
        "IsPartial": bool, "Alternatives": list, "ChannelId": str, "LanguageCode": str,
        "LanguageIdentification": list,
    }
    for key, typ in types.items():
        if key in result and not isinstance(result[key], typ):
            problems.append(f"{where}.{key}: wrong type {type(result[key]).__name__}")
    for i, lang in enumerate(result.get("LanguageIdentification") or []):
        if not isinstance(lang.get("LanguageCode"), str) or not isinstance(lang.get("Score"), (int, float)):
            problems.append(f"{where}.LanguageIdentification[{i}]: needs LanguageCode (string) and Score (number)")


# --------------------------------------------------------------------------
# TLS → h2c proxy so that amazon-transcribe (HTTPS + HTTP/2 only) can reach
# the plain-http sandbox
# --------------------------------------------------------------------------


class TlsProxy:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = None
        self.cafile = None
        self._loop = None
        self._stopping = None
        self._thread = None
        self._dir = tempfile.TemporaryDirectory(prefix="parley-conformance-")

    def _make_cert(self):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        certfile = os.path.join(self._dir.name, "cert.pem")
        keyfile = os.path.join(self._dir.name, "key.pem")
        with open(certfile, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(keyfile, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        return certfile, keyfile

    def start(self, wait_s=5.0):
        certfile, keyfile = self._make_cert()
        self.cafile = certfile
        ready = threading.Event()
        errors = []

        async def pipe(reader, writer):
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            finally:
                try:
                    writer.close()
                except Exception:
                    pass

        open_writers = set()

        async def handle(reader, writer):
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.target_port), 5
                )
            except Exception:
                writer.close()
                return
            open_writers.update((writer, up_writer))
            try:
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            finally:
                open_writers.difference_update((writer, up_writer))

        async def serve():
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            ctx.set_alpn_protocols(["h2"])
            self._stopping = asyncio.Event()
            server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await self._stopping.wait()
            server.close()
            for writer in list(open_writers):
                writer.transport.abort()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if others:
                await asyncio.wait(others, timeout=1)
            # Whatever is left is cancelled quietly (asyncio would log the
            # cancellation of a connection handler as an error).
            asyncio.get_running_loop().set_exception_handler(lambda _loop, _context: None)
            for task in others:
                task.cancel()

        def run():
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(serve())
            except Exception as e:  # reported through `errors`
                errors.append(e)
                ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="tls-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(wait_s) or errors or self.port is None:
            raise RuntimeError(f"TLS proxy did not start: {errors}")
        return self.port

    def stop(self):
        loop = self._loop
        if loop is not None and self._stopping is not None:
            try:
                loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:  # loop already closed
                pass
        if self._thread:
            self._thread.join(timeout=3)
        self._dir.cleanup()


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------


class Suite:
    def __init__(self, port: int):
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        cfg = Config(
            region_name=REGION,
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=3,
            read_timeout=HTTP_TIMEOUT_S,
            # Client-side validation off: the sandbox's own validation is tested.
            parameter_validation=False,
        )
        session = boto3.session.Session(
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region_name=REGION,
        )
        self.connect = session.client("connect", endpoint_url=self.endpoint, config=cfg)
        self.participant = session.client("connectparticipant", endpoint_url=self.endpoint, config=cfg)
        self.social = session.client("socialmessaging", endpoint_url=self.endpoint, config=cfg)
        for client in (self.connect, self.participant, self.social):
            client.meta.events.register("after-call", _after_call)
        self.ctx: dict = {}

    # ---- shared helpers ----

    def control(self, method, path, payload=None):
        body = json.dumps(payload) if payload is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        return raw_http(self.port, method, path, body, headers)

    def throttle(self, count):
        rec = self.control("POST", "/_sandbox/throttle", {"count": count})
        if rec.status >= 300:
            raise Fail(f"control POST /_sandbox/throttle answered HTTP {rec.status}", [rec.describe()])

    def new_chat(self, name="Conformance Customer"):
        r = api(
            self.connect,
            "start_chat_contact",
            InstanceId=INSTANCE_ID,
            ContactFlowId=CONTACT_FLOW_ID,
            ParticipantDetails={"DisplayName": name},
            SupportedMessagingContentTypes=CHAT_CONTENT_TYPES,
        )
        out = require_ok(r, "StartChatContact (setup)")
        c = api(
            self.participant,
            "create_participant_connection",
            ParticipantToken=out["ParticipantToken"],
            Type=["CONNECTION_CREDENTIALS"],
            ConnectParticipant=True,
        )
        conn = require_ok(c, "CreateParticipantConnection (setup)")
        return {
            "contact_id": out["ContactId"],
            "participant_token": out["ParticipantToken"],
            "connection_token": conn["ConnectionCredentials"]["ConnectionToken"],
        }

    def send_text(self, token, text="hello", content_type="text/plain"):
        return api(self.participant, "send_message", ConnectionToken=token, ContentType=content_type, Content=text)

    def need(self, key, step):
        if key not in self.ctx:
            raise Fail(f"not run: the happy-path step {step} did not succeed")
        return self.ctx[key]

    # ---- happy path ----

    def happy_start_chat(self):
        r = api(
            self.connect,
            "start_chat_contact",
            InstanceId=INSTANCE_ID,
            ContactFlowId=CONTACT_FLOW_ID,
            Attributes={"channel": "whatsapp"},
            ParticipantDetails={"DisplayName": "Conformance Customer"},
            SupportedMessagingContentTypes=CHAT_CONTENT_TYPES,
        )
        out = require_ok(r, "StartChatContact")
        missing = [k for k in ("ContactId", "ParticipantId", "ParticipantToken") if not out.get(k)]
        if missing:
            raise Fail(f"response lacks {missing}", [r.rec.describe()])
        self.ctx.update(contact_id=out["ContactId"], participant_token=out["ParticipantToken"])
        return f"ContactId={out['ContactId']}"

    def happy_start_streaming(self):
        contact = self.need("contact_id", "StartChatContact")
        r = api(
            self.connect,
            "start_contact_streaming",
            InstanceId=INSTANCE_ID,
            ContactId=contact,
            ChatStreamingConfiguration={"StreamingEndpointArn": STREAMING_TOPIC},
            ClientToken=str(uuid.uuid4()),
        )
        out = require_ok(r, "StartContactStreaming")
        if not out.get("StreamingId"):
            raise Fail("StreamingId (required) missing", [r.rec.describe()])
        self.ctx["streaming_id"] = out["StreamingId"]
        return f"StreamingId={out['StreamingId']}"

    def happy_connection(self):
        token = self.need("participant_token", "StartChatContact")
        r = api(
            self.participant,
            "create_participant_connection",
            ParticipantToken=token,
            Type=["CONNECTION_CREDENTIALS"],
            ConnectParticipant=True,
        )
        out = require_ok(r, "CreateParticipantConnection")
        creds = out.get("ConnectionCredentials") or {}
        if not creds.get("ConnectionToken") or not creds.get("Expiry"):
            raise Fail("ConnectionCredentials lacks ConnectionToken/Expiry", [r.rec.describe()])
        expiry = parse_iso(creds["Expiry"])
        if not time.time() < expiry <= time.time() + 2 * 86400:
            raise Fail(f"Expiry {creds['Expiry']} is not within the next day or two")
        self.ctx["connection_token"] = creds["ConnectionToken"]
        self.ctx["rec_connection"] = r.rec
        return f"ConnectionToken issued, Expiry={creds['Expiry']}"

    def happy_send_message(self):
        token = self.need("connection_token", "CreateParticipantConnection")
        r = self.send_text(token, "hello from the conformance test")
        out = require_ok(r, "SendMessage")
        if not out.get("Id") or not out.get("AbsoluteTime"):
            raise Fail("SendMessage response lacks Id/AbsoluteTime", [r.rec.describe()])
        self.ctx.update(message_id=out["Id"], rec_send_message=r.rec)
        return f"Id={out['Id']} AbsoluteTime={out['AbsoluteTime']}"

    def happy_typing(self):
        token = self.need("connection_token", "CreateParticipantConnection")
        r = api(self.participant, "send_event", ConnectionToken=token, ContentType=TYPING)
        out = require_ok(r, "SendEvent(typing)")
        if not out.get("Id") or not out.get("AbsoluteTime"):
            raise Fail("SendEvent response lacks Id/AbsoluteTime", [r.rec.describe()])
        self.ctx["rec_send_event"] = r.rec
        return f"Id={out['Id']}"

    def happy_delivered(self):
        token = self.need("connection_token", "CreateParticipantConnection")
        message_id = self.need("message_id", "SendMessage")
        r = api(
            self.participant,
            "send_event",
            ConnectionToken=token,
            ContentType=DELIVERED,
            Content=json.dumps({"messageId": message_id}),
        )
        out = require_ok(r, "SendEvent(message.delivered)")
        if not out.get("Id"):
            raise Fail("SendEvent response lacks Id", [r.rec.describe()])
        return f"Id={out['Id']}"

    def happy_start_upload(self):
        token = self.need("connection_token", "CreateParticipantConnection")
        data = tiny_png()
        r = api(
            self.participant,
            "start_attachment_upload",
            ConnectionToken=token,
            ContentType="image/png",
            AttachmentSizeInBytes=len(data),
            AttachmentName="receipt.png",
            ClientToken=str(uuid.uuid4()),
        )
        out = require_ok(r, "StartAttachmentUpload")
        meta = out.get("UploadMetadata") or {}
        if not out.get("AttachmentId") or not meta.get("Url") or not meta.get("UrlExpiry"):
            raise Fail("response lacks AttachmentId / UploadMetadata.Url / UrlExpiry", [r.rec.describe()])
        self.ctx.update(
            attachment_id=out["AttachmentId"],
            upload=meta,
            attachment_bytes=data,
            rec_start_upload=r.rec,
        )
        return f"AttachmentId={out['AttachmentId']}, {len(meta.get('HeadersToInclude') or {})} headers to include"

    def happy_put(self):
        meta = self.need("upload", "StartAttachmentUpload")
        data = self.ctx["attachment_bytes"]
        rec = raw_url(meta["Url"], "PUT", data, dict(meta.get("HeadersToInclude") or {}))
        if not 200 <= rec.status < 300:
            raise Fail(f"PUT to the upload URL answered HTTP {rec.status}", [rec.describe()])
        self.ctx["uploaded"] = True
        return f"HTTP {rec.status} for {len(data)} bytes"

    def happy_complete(self):
        token = self.need("connection_token", "CreateParticipantConnection")
        attachment = self.need("attachment_id", "StartAttachmentUpload")
        self.need("uploaded", "PUT upload")
        r = api(
            self.participant,
            "complete_attachment_upload",
            ConnectionToken=token,
            AttachmentIds=[attachment],
            ClientToken=str(uuid.uuid4()),
        )
        require_ok(r, "CompleteAttachmentUpload")
        self.ctx["completed"] = True
        return "attachment completed"

    def happy_get_attachment(self):
        token = self.need("connection_token", "CreateParticipantConnection")
        attachment = self.need("attachment_id", "StartAttachmentUpload")
        self.need("completed", "CompleteAttachmentUpload")
        asked = time.time()
        r = api(
            self.participant,
            "get_attachment",
            ConnectionToken=token,
            AttachmentId=attachment,
            UrlExpiryInSeconds=60,
        )
        out = require_ok(r, "GetAttachment")
        if not out.get("Url") or not out.get("UrlExpiry"):
            raise Fail("response lacks Url/UrlExpiry", [r.rec.describe()])
        if out.get("AttachmentSizeInBytes") != len(self.ctx["attachment_bytes"]):
            raise Fail(
                f"AttachmentSizeInBytes={out.get('AttachmentSizeInBytes')}, uploaded {len(self.ctx['attachment_bytes'])}"
            )
        self.ctx.update(download_url=out["Url"], rec_get_attachment=r.rec, get_attachment_asked=asked)
        return f"Url issued, UrlExpiry={out['UrlExpiry']}, size ok"

    def happy_download(self):
        url = self.need("download_url", "GetAttachment")
        rec = raw_url(url)
        if rec.status != 200 or rec.body != self.ctx["attachment_bytes"]:
            raise Fail(f"download answered HTTP {rec.status} with {len(rec.body)} bytes (want the uploaded bytes)")
        return f"{len(rec.body)} bytes, identical; content-type {rec.header('content-type')}"

    def happy_control_transcript(self):
        contact = self.need("contact_id", "StartChatContact")
        rec = self.control("GET", f"/_sandbox/contacts/{contact}")
        data = rec.json() if rec.status == 200 else None
        if not isinstance(data, dict):
            raise Fail(f"control GET /_sandbox/contacts/{{id}} answered HTTP {rec.status}", [rec.describe()])
        blob = json.dumps(data)
        want = {
            "message": "hello from the conformance test",
            "typing event": TYPING,
            "delivered receipt": DELIVERED,
            "attachment": self.ctx.get("attachment_id", "∅"),
        }
        missing = [what for what, text in want.items() if text not in blob]
        if missing:
            raise Fail(f"the sandbox's transcript of the contact lacks: {missing}")
        return "message, typing, delivered receipt and attachment all recorded"

    def happy_whatsapp(self):
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+14255550123",
            "type": "text",
            "text": {"preview_url": False, "body": "Hello from the conformance test"},
        }
        r = api(
            self.social,
            "send_whatsapp_message",
            originationPhoneNumberId=ORIGINATION,
            message=json.dumps(payload).encode(),
            metaApiVersion=META_API_VERSION,
        )
        out = require_ok(r, "SendWhatsAppMessage")
        if not out.get("messageId"):
            raise Fail("messageId missing", [r.rec.describe()])
        sent = self.control("GET", "/_sandbox/whatsapp/sent").json() or []
        match = [s for s in sent if isinstance(s, dict) and s.get("message_id") == out["messageId"]]
        if not match or match[-1].get("message") != payload or match[-1].get("origination") != ORIGINATION:
            raise Fail("the sandbox did not record the decoded Meta payload as sent", [json.dumps(sent)[:300]])
        return f"messageId={out['messageId']}; payload recorded as sent"

    # ---- timestamps ----

    def _raw_value(self, rec_key, step, path):
        rec = self.need(rec_key, step)
        value = rec.json()
        for part in path:
            value = (value or {}).get(part)
        return value

    def ts_check(self, rec_key, step, path):
        value = self._raw_value(rec_key, step, path)
        if not isinstance(value, str):
            raise Fail(f"{'.'.join(path)} missing in the raw response")
        if not MS_TIMESTAMP.match(value):
            raise Fail(
                f"{'.'.join(path)}={value!r} has no milliseconds; the model documents yyyy-MM-ddThh:mm:ss.SSSZ "
                "(e.g. 2019-11-08T02:41:28.172Z)"
            )
        return f"{'.'.join(path)}={value}"

    def url_expiry_honoured(self):
        value = self._raw_value("rec_get_attachment", "GetAttachment", ["UrlExpiry"])
        asked = self.ctx["get_attachment_asked"]
        try:
            expiry = parse_iso(value)
        except ValueError as e:
            raise Fail(str(e))
        delta = expiry - asked
        if not 50 <= delta <= 70:
            raise Fail(f"asked UrlExpiryInSeconds=60, UrlExpiry={value} is now+{delta:.0f}s")
        return f"UrlExpiry is now+{delta:.0f}s for UrlExpiryInSeconds=60"

    # ---- operations that must exist ----

    def op_exists(self, client, method, op_name, service, kwargs, verify=None):
        r = api(client, method, **kwargs)
        if r.ok:
            if verify:
                return verify(r)
            return f"works (HTTP {r.status})"
        code, from_header = error_code_of(r.rec) if r.rec else (r.code, False)
        modeled = modeled_errors(service, op_name)
        if not from_header or code not in modeled:
            raise Fail(
                f"{op_name} is not implemented: HTTP {r.status}, code {code!r}"
                + ("" if from_header else " (no x-amzn-ErrorType: a bare route-miss)")
                + f"; modeled errors are {sorted(modeled)}",
                [r.rec.describe() if r.rec else None],
            )
        return f"answers a modeled error {code} (HTTP {r.status})"

    def op_get_transcript(self):
        token = self.need("connection_token", "CreateParticipantConnection")
        message_id = self.need("message_id", "SendMessage")

        def verify(r):
            items = r.out.get("Transcript") or []
            if not any(i.get("Id") == message_id for i in items):
                raise Fail(f"GetTranscript works but its {len(items)} items lack the sent message {message_id}")
            if r.out.get("InitialContactId") not in (None, self.ctx["contact_id"]):
                raise Fail(f"InitialContactId={r.out.get('InitialContactId')} is not the contact")
            return f"works: {len(items)} items including the sent message"

        return self.op_exists(
            self.participant,
            "get_transcript",
            "GetTranscript",
            "connectparticipant",
            dict(ConnectionToken=token, MaxResults=100, SortOrder="ASCENDING"),
            verify,
        )

    def op_describe_contact(self):
        contact = self.need("contact_id", "StartChatContact")

        def verify(r):
            c = r.out.get("Contact") or {}
            if c.get("Id") != contact:
                raise Fail(f"Contact.Id={c.get('Id')!r}, want {contact}", [r.rec.describe()])
            return f"works: Contact.Id matches, Channel={c.get('Channel')}"

        return self.op_exists(
            self.connect,
            "describe_contact",
            "DescribeContact",
            "connect",
            dict(InstanceId=INSTANCE_ID, ContactId=contact),
            verify,
        )

    def op_update_attributes(self):
        contact = self.need("contact_id", "StartChatContact")
        return self.op_exists(
            self.connect,
            "update_contact_attributes",
            "UpdateContactAttributes",
            "connect",
            dict(InstanceId=INSTANCE_ID, InitialContactId=contact, Attributes={"conformance": "yes"}),
        )

    def op_stop_streaming(self):
        contact = self.need("contact_id", "StartChatContact")
        streaming = self.need("streaming_id", "StartContactStreaming")
        return self.op_exists(
            self.connect,
            "stop_contact_streaming",
            "StopContactStreaming",
            "connect",
            dict(InstanceId=INSTANCE_ID, ContactId=contact, StreamingId=streaming),
        )

    def op_stop_contact(self):
        chat = self.new_chat("Stop Contact")
        self.ctx["stop_chat"] = chat
        result = self.op_exists(
            self.connect,
            "stop_contact",
            "StopContact",
            "connect",
            dict(InstanceId=INSTANCE_ID, ContactId=chat["contact_id"]),
        )
        if result.startswith("works"):
            self.ctx["stopped"] = True
        return result

    # ---- tokens refused after disconnect / chat end ----

    def expect_access_denied(self, token, when):
        r = self.send_text(token, "are you still there?")
        if r.ok:
            raise Fail(f"SendMessage {when} succeeded (HTTP {r.status}); want AccessDeniedException", [r.rec.describe()])
        if r.code != "AccessDeniedException" or r.status != 403:
            raise Fail(f"SendMessage {when}: {r.code} HTTP {r.status}; want AccessDeniedException 403", [r.rec.describe()])
        return f"SendMessage {when} → AccessDeniedException 403"

    def disconnect_refused(self):
        chat = self.new_chat("Leaving Customer")
        r = api(
            self.participant,
            "disconnect_participant",
            ConnectionToken=chat["connection_token"],
            ClientToken=str(uuid.uuid4()),
        )
        require_ok(r, "DisconnectParticipant")
        return self.expect_access_denied(chat["connection_token"], "after DisconnectParticipant")

    def stop_contact_refused(self):
        chat = self.ctx.get("stop_chat")
        if not chat or not self.ctx.get("stopped"):
            raise Fail("could not end the chat: StopContact did not succeed (see ops.connect.StopContact)")
        return self.expect_access_denied(chat["connection_token"], "after StopContact ended the chat")

    def chat_ended_event_refused(self):
        chat = self.new_chat("Ended Chat")
        rec = self.control("POST", "/_sandbox/agent-event", {"contact_id": chat["contact_id"], "event": "chat.ended"})
        if rec.status >= 300:
            raise Fail(f"control POST /_sandbox/agent-event answered HTTP {rec.status}", [rec.describe()])
        return self.expect_access_denied(chat["connection_token"], "after the chat ended (chat.ended)")

    def expired_refused(self):
        chat = self.new_chat("Expired Customer")
        rec = self.control("POST", "/_sandbox/expire-connections")
        if rec.status >= 300:
            raise Fail(f"control POST /_sandbox/expire-connections answered HTTP {rec.status}", [rec.describe()])
        return self.expect_access_denied(chat["connection_token"], "with an expired connection token")

    # ---- websocket ----

    def websocket(self, types):
        chat = self.new_chat("Websocket Customer")
        r = api(
            self.participant,
            "create_participant_connection",
            ParticipantToken=chat["participant_token"],
            Type=types,
        )
        out = require_ok(r, f"CreateParticipantConnection(Type={types})")
        ws = out.get("Websocket")
        if not isinstance(ws, dict) or not ws.get("Url") or not ws.get("ConnectionExpiry"):
            raise Fail(f"Type={types} returned no Websocket {{Url, ConnectionExpiry}}", [r.rec.describe()])
        if urllib.parse.urlparse(ws["Url"]).scheme not in ("wss", "ws"):
            raise Fail(f"Websocket.Url {ws['Url']!r} is not a ws(s):// URL")
        parse_iso(ws["ConnectionExpiry"])
        if "CONNECTION_CREDENTIALS" in types and not (out.get("ConnectionCredentials") or {}).get("ConnectionToken"):
            raise Fail("ConnectionCredentials missing although requested", [r.rec.describe()])
        return f"Websocket.Url={ws['Url'][:60]}, ConnectionExpiry={ws['ConnectionExpiry']}"

    # ---- SendMessage content limits ----

    def content_limit(self, content_type):
        chat = self.new_chat("Limits Customer")
        token = chat["connection_token"]
        at_limit = content_of_size(content_type, MAX_CHAT_CONTENT_BYTES)
        over = content_of_size(content_type, MAX_CHAT_CONTENT_BYTES + 1)
        r = self.send_text(token, at_limit, content_type)
        if not r.ok:
            raise Fail(
                f"{MAX_CHAT_CONTENT_BYTES} bytes of {content_type} refused: {r.code} HTTP {r.status}; "
                "the API reference allows 16,384 bytes for all content types",
                [r.rec.describe() if r.rec else None],
            )
        r = self.send_text(token, over, content_type)
        if r.ok or r.code != "ValidationException" or r.status != 400:
            raise Fail(
                f"{MAX_CHAT_CONTENT_BYTES + 1} bytes of {content_type}: "
                + ("accepted" if r.ok else f"{r.code} HTTP {r.status}")
                + "; want ValidationException 400",
                [r.rec.describe() if r.rec else None],
            )
        return f"{MAX_CHAT_CONTENT_BYTES} bytes accepted, {MAX_CHAT_CONTENT_BYTES + 1} → ValidationException"

    def initial_message_limit(self):
        r = api(
            self.connect,
            "start_chat_contact",
            InstanceId=INSTANCE_ID,
            ContactFlowId=CONTACT_FLOW_ID,
            ParticipantDetails={"DisplayName": "Initial Message"},
            InitialMessage={"ContentType": "text/plain", "Content": "a" * MAX_CHAT_CONTENT_BYTES},
        )
        if not r.ok:
            raise Fail(
                f"InitialMessage of {MAX_CHAT_CONTENT_BYTES} bytes refused: {r.code} HTTP {r.status}; the connect "
                "model's ChatMessage.Content allows 16,384 bytes for all content types",
                [r.rec.describe() if r.rec else None],
            )
        return f"InitialMessage of {MAX_CHAT_CONTENT_BYTES} bytes accepted"

    def content_limit_bytes(self):
        chat = self.new_chat("Bytes Customer")
        token = chat["connection_token"]
        fits = "é" * (MAX_CHAT_CONTENT_BYTES // 2)  # 16,384 bytes, 8,192 characters
        too_big = "é" * (MAX_CHAT_CONTENT_BYTES // 2 + 1)  # 16,386 bytes, 8,193 characters
        r = self.send_text(token, fits)
        if not r.ok:
            raise Fail(f"8,192 × 'é' (16,384 UTF-8 bytes) refused: {r.code} HTTP {r.status}", [r.rec.describe()])
        r = self.send_text(token, too_big)
        if r.ok or r.code != "ValidationException":
            raise Fail(
                "8,193 × 'é' (16,386 UTF-8 bytes, 8,193 characters) "
                + ("accepted" if r.ok else f"→ {r.code}")
                + ": the limit is in bytes, want ValidationException",
                [r.rec.describe() if r.rec else None],
            )
        return "limit counted in UTF-8 bytes"

    # ---- errors ----

    def connect_validation(self):
        cases = []

        def start(**over):
            kw = dict(
                InstanceId=INSTANCE_ID,
                ContactFlowId=CONTACT_FLOW_ID,
                ParticipantDetails={"DisplayName": "Validation Customer"},
                SupportedMessagingContentTypes=CHAT_CONTENT_TYPES,
            )
            kw.update(over)
            return api(self.connect, "start_chat_contact", **kw)

        cases.append(("StartChatContact ChatDurationInMinutes=59", start(ChatDurationInMinutes=59)))
        cases.append(("StartChatContact DisplayName=''", start(ParticipantDetails={"DisplayName": ""})))
        cases.append(
            (
                "StartChatContact InitialMessage of 16,385 bytes",
                start(InitialMessage={"ContentType": "text/plain", "Content": "a" * (MAX_CHAT_CONTENT_BYTES + 1)}),
            )
        )
        contact = self.ctx.get("contact_id") or self.new_chat("Streaming Validation")["contact_id"]
        cases.append(
            (
                "StartContactStreaming with a FIFO topic",
                api(
                    self.connect,
                    "start_contact_streaming",
                    InstanceId=INSTANCE_ID,
                    ContactId=contact,
                    ChatStreamingConfiguration={"StreamingEndpointArn": STREAMING_TOPIC + ".fifo"},
                    ClientToken=str(uuid.uuid4()),
                ),
            )
        )
        allowed = {"InvalidRequestException", "InvalidParameterException"}
        bad, good = [], []
        for what, r in cases:
            if r.ok:
                bad.append(f"{what}: accepted")
            elif r.code not in allowed or r.status != 400:
                bad.append(f"{what}: {r.code} HTTP {r.status}")
            else:
                good.append(f"{what}: {r.code}")
        if bad:
            raise Fail(
                "want InvalidRequestException/InvalidParameterException 400 (connect does not model "
                "ValidationException): " + "; ".join(bad),
                [r.rec.describe() for _, r in cases if r.rec and not r.ok][:2],
            )
        return "; ".join(good)

    def connect_not_found(self):
        r = api(
            self.connect,
            "start_contact_streaming",
            InstanceId=INSTANCE_ID,
            ContactId=str(uuid.uuid4()),
            ChatStreamingConfiguration={"StreamingEndpointArn": STREAMING_TOPIC},
            ClientToken=str(uuid.uuid4()),
        )
        if r.ok or r.code != "ResourceNotFoundException" or r.status != 404:
            raise Fail(
                f"unknown ContactId: {'accepted' if r.ok else f'{r.code} HTTP {r.status}'}; want ResourceNotFoundException 404",
                [r.rec.describe() if r.rec else None],
            )
        return "unknown ContactId → ResourceNotFoundException 404"

    def message_member_case(self, service):
        """The error body's message member is spelled as the model spells it."""
        if service == "connect":
            r = api(
                self.connect,
                "start_contact_streaming",
                InstanceId=INSTANCE_ID,
                ContactId=str(uuid.uuid4()),
                ChatStreamingConfiguration={"StreamingEndpointArn": STREAMING_TOPIC},
                ClientToken=str(uuid.uuid4()),
            )
        else:
            r = self.send_text("ctok-not-a-real-token", "hi")
        if r.ok or r.rec is None:
            raise Fail("the call that should fail succeeded", [r.rec.describe() if r.rec else None])
        want = message_member(service, r.code) or service_message_member(service)
        data = r.rec.json()
        if not isinstance(data, dict) or want not in data:
            have = [k for k in data if k.lower() == "message"] if isinstance(data, dict) else data
            raise Fail(f"{r.code} body carries {have!r}, the {service} model's member is {want!r}", [r.rec.describe()])
        return f"{r.code} body carries {want!r}"

    def participant_bad_token(self):
        r = self.send_text("ctok-not-a-real-token", "hi")
        if r.ok or r.code != "AccessDeniedException" or r.status != 403:
            raise Fail(
                f"bogus ConnectionToken: {'accepted' if r.ok else f'{r.code} HTTP {r.status}'}; want AccessDeniedException 403",
                [r.rec.describe() if r.rec else None],
            )
        return "bogus ConnectionToken → AccessDeniedException 403"

    def social_validation(self):
        r = api(
            self.social,
            "send_whatsapp_message",
            originationPhoneNumberId="503650672828631",
            message=json.dumps({"messaging_product": "whatsapp", "to": "14255550123", "type": "text", "text": {"body": "x"}}).encode(),
            metaApiVersion=META_API_VERSION,
        )
        allowed = {"ValidationException", "InvalidParametersException", "ResourceNotFoundException"}
        if r.ok or r.code not in allowed:
            raise Fail(
                f"invalid originationPhoneNumberId: {'accepted' if r.ok else r.code}; want one of {sorted(allowed)}",
                [r.rec.describe() if r.rec else None],
            )
        return f"invalid originationPhoneNumberId → {r.code} HTTP {r.status}"

    def malformed_json(self, service):
        if service == "connect":
            method, path, op, headers = "PUT", "/contact/chat", "StartChatContact", {}
        elif service == "connectparticipant":
            chat = self.new_chat("Malformed Customer")
            method, path, op = "POST", "/participant/message", "SendMessage"
            headers = {"X-Amz-Bearer": chat["connection_token"]}
        else:
            method, path, op, headers = "POST", "/v1/whatsapp/send", "SendWhatsAppMessage", {}
        headers = dict(headers, **{"Content-Type": "application/json"})
        rec = raw_http(self.port, method, path, '{"InstanceId": "x", ', headers, service, op)
        problems = []
        if rec.status == 422 or not 400 <= rec.status < 500:
            problems.append(f"HTTP {rec.status} (want a 400-class AWS error)")
        if not rec.header("x-amzn-errortype"):
            problems.append("no x-amzn-ErrorType header")
        if not isinstance(rec.json(), dict):
            problems.append(f"body is not JSON (content-type {rec.header('content-type')!r})")
        code, from_header = error_code_of(rec)
        if from_header:
            if code not in modeled_errors(service, op) and code not in COMMON_ERRORS:
                problems.append(f"{code} is neither modeled for {op} nor a common AWS error")
            if service == "connect" and code == "ValidationException":
                problems.append("connect does not model ValidationException")
        if problems:
            raise Fail(f"malformed JSON to {op}: " + "; ".join(problems), [rec.describe()])
        return f"malformed JSON → {code} HTTP {rec.status} (JSON body)"

    def missing_member(self, service):
        if service == "connect":
            op = "StartChatContact"
            r = api(
                self.connect,
                "start_chat_contact",
                ContactFlowId=CONTACT_FLOW_ID,
                ParticipantDetails={"DisplayName": "No Instance"},
            )
            allowed = {"InvalidRequestException", "InvalidParameterException"}
            what = "StartChatContact without InstanceId"
        elif service == "connectparticipant":
            op = "SendMessage"
            chat = self.new_chat("Missing Member")
            r = api(self.participant, "send_message", ConnectionToken=chat["connection_token"], Content="hi")
            allowed = {"ValidationException"}
            what = "SendMessage without ContentType"
        else:
            op = "SendWhatsAppMessage"
            r = api(
                self.social,
                "send_whatsapp_message",
                originationPhoneNumberId=ORIGINATION,
                message=b'{"messaging_product":"whatsapp","to":"14255550123","type":"text","text":{"body":"x"}}',
            )
            allowed = {"ValidationException", "InvalidParametersException"}
            what = "SendWhatsAppMessage without metaApiVersion"
        code, from_header = error_code_of(r.rec) if r.rec else (r.code, False)
        if r.ok or not from_header or code not in allowed or r.status != 400:
            raise Fail(
                f"{what}: "
                + ("accepted" if r.ok else f"HTTP {r.status} code {code!r}" + ("" if from_header else " (no x-amzn-ErrorType)"))
                + f"; want {'/'.join(sorted(allowed))} 400 (modeled for {op})",
                [r.rec.describe() if r.rec else None],
            )
        return f"{what} → {code} 400"

    def throttled(self, what, call, want_code, want_status=429):
        self.throttle(1)
        try:
            r = call()
        finally:
            self.throttle(0)
        if r.ok or r.code != want_code or r.status != want_status:
            raise Fail(
                f"throttled {what}: {'accepted' if r.ok else f'{r.code} HTTP {r.status}'}; want {want_code} {want_status}",
                [r.rec.describe() if r.rec else None],
            )
        return f"throttled {what} → {want_code} {want_status}"

    # ---- Transcribe Streaming ----

    def _transcribe(self, headers, keys="427"):
        frames = audio_frames(dtmf_pcm(keys, 16_000))
        return transcribe_raw(self.port, headers, frames)

    def transcribe_language_code(self):
        status, hdrs, messages, body = self._transcribe(
            {
                "x-amzn-transcribe-language-code": "en-US",
                "x-amzn-transcribe-sample-rate": "16000",
                "x-amzn-transcribe-media-encoding": "pcm",
            }
        )
        self.ctx["transcribe_headers"] = hdrs
        if status != 200:
            raise Fail(f"HTTP {status}", [body[:200].decode("utf-8", "replace")])
        if messages is None:
            raise Fail(f"content-type {hdrs.get('content-type')!r} is not application/vnd.amazon.eventstream")
        events, exceptions = transcript_events(messages)
        if exceptions:
            raise Fail(f"stream ended with exception frames {exceptions}")
        finals = final_results(events)
        problems = []
        for i, r in enumerate(finals):
            check_result_shape(r, problems, f"Result[{i}]")
        text = " ".join(r.get("Alternatives", [{}])[0].get("Transcript", "") for r in finals)
        want = " ".join(DTMF_WORDS[k] for k in "427")
        if text != want:
            problems.append(f"final transcript {text!r}, want {want!r}")
        if problems:
            raise Fail("; ".join(problems))
        return f"{len(events)} TranscriptEvents over HTTP/1.1; final transcript {text!r}"

    def transcribe_response_headers(self):
        hdrs = self.ctx.get("transcribe_headers")
        if hdrs is None:
            raise Fail("not run: the language-code stream did not complete")
        want = {"x-amzn-transcribe-sample-rate": "16000", "x-amzn-transcribe-media-encoding": "pcm"}
        problems = [f"{h}: {hdrs.get(h, 'absent')!r} (want {v!r})" for h, v in want.items() if hdrs.get(h) != v]
        if not (hdrs.get("x-amzn-request-id") or hdrs.get("x-amzn-requestid")):
            problems.append("no x-amzn-request-id")
        if problems:
            raise Fail(
                "StartStreamTranscription response headers: " + "; ".join(problems)
                + " (the model's MediaSampleRateHertz/MediaEncoding output members)",
                ["response headers: " + ", ".join(f"{k}={v}" for k, v in sorted(hdrs.items()) if k.startswith("x-amzn"))],
            )
        return "sample-rate and media-encoding echoed; request id present"

    def transcribe_identify_case(self):
        bad = []
        for value in ("True", "TRUE", "true"):
            status, hdrs, messages, body = self._transcribe(
                {
                    "x-amzn-transcribe-identify-language": value,
                    "x-amzn-transcribe-language-options": "en-US,es-US",
                    "x-amzn-transcribe-sample-rate": "16000",
                    "x-amzn-transcribe-media-encoding": "pcm",
                },
                keys="1",
            )
            if status != 200:
                bad.append(f"{value!r} → HTTP {status} {hdrs.get('x-amzn-errortype', '')} {body[:120].decode('utf-8', 'replace')}")
        if bad:
            raise Fail(
                "x-amzn-transcribe-identify-language is a boolean header (amazon-transcribe sends 'True'): "
                + "; ".join(bad)
            )
        return "'True', 'TRUE' and 'true' accepted"

    def transcribe_language_identification(self):
        options = ["en-US", "es-US"]
        status, hdrs, messages, body = self._transcribe(
            {
                "x-amzn-transcribe-identify-language": "true",
                "x-amzn-transcribe-language-options": ",".join(options),
                "x-amzn-transcribe-sample-rate": "16000",
                "x-amzn-transcribe-media-encoding": "pcm",
            }
        )
        if status != 200 or messages is None:
            raise Fail(f"identify-language stream: HTTP {status}", [body[:200].decode("utf-8", "replace")])
        events, exceptions = transcript_events(messages)
        if exceptions:
            raise Fail(f"stream ended with exception frames {exceptions}")
        finals = final_results(events)
        if not finals:
            raise Fail("no final result")
        problems = []
        for i, r in enumerate(finals):
            check_result_shape(r, problems, f"Result[{i}]")
            if r.get("LanguageCode") not in options:
                problems.append(f"Result[{i}].LanguageCode={r.get('LanguageCode')!r} not one of {options}")
            ids = r.get("LanguageIdentification")
            if not ids:
                problems.append(f"Result[{i}] has no LanguageIdentification")
            elif not any(isinstance(x, dict) and x.get("LanguageCode") in options for x in ids):
                problems.append(f"Result[{i}].LanguageIdentification names none of {options}: {ids}")
        if problems:
            raise Fail("; ".join(problems), ["final result: " + json.dumps(finals[-1])[:300]])
        return f"LanguageCode={finals[-1]['LanguageCode']}, LanguageIdentification={finals[-1]['LanguageIdentification']}"

    def transcribe_bad_request(self):
        status, hdrs, messages, body = self._transcribe(
            {"x-amzn-transcribe-language-code": "en-US", "x-amzn-transcribe-sample-rate": "16000"}
        )
        problems = []
        if status != 400:
            problems.append(f"HTTP {status} (want 400)")
        if hdrs.get("x-amzn-errortype", "").split(":")[0] != "BadRequestException":
            problems.append(f"x-amzn-ErrorType={hdrs.get('x-amzn-errortype')!r} (want BadRequestException)")
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "Message" not in data:
            problems.append(f"body {body[:100]!r} lacks the modeled 'Message' member")
        if not (hdrs.get("x-amzn-request-id") or hdrs.get("x-amzn-requestid")):
            problems.append("no request id header")
        if problems:
            raise Fail("missing media encoding: " + "; ".join(problems))
        return "missing media encoding → BadRequestException 400 with Message"

    # ---- amazon-transcribe (awslabs) over HTTPS/HTTP/2 via the TLS proxy ----

    def _sdk_available(self):
        try:
            import amazon_transcribe  # noqa: F401
            import awscrt  # noqa: F401
            import cryptography  # noqa: F401
        except ImportError as e:
            msg = (
                f"amazon-transcribe not installed ({e}); "
                "pip install -r tests/conformance/requirements.txt"
            )
            if os.environ.get("PARLEY_CONFORMANCE_REQUIRE_SDK") == "1":
                raise Fail(msg)
            raise Skip(msg)
        if "proxy" not in self.ctx:
            proxy = TlsProxy(self.port)
            proxy.start()
            self.ctx["proxy"] = proxy
        return self.ctx["proxy"]

    def _sdk_run(self, proxy, **kwargs):
        from amazon_transcribe.auth import StaticCredentialResolver
        from amazon_transcribe.client import TranscribeStreamingClient
        from amazon_transcribe.endpoints import StaticEndpointResolver
        from awscrt import io as crt_io

        async def go():
            client = TranscribeStreamingClient(
                region=REGION,
                endpoint_resolver=StaticEndpointResolver(f"https://127.0.0.1:{proxy.port}"),
                credential_resolver=StaticCredentialResolver("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            )
            # Trust the proxy's throwaway certificate (the client has no
            # public option for a custom trust store).
            options = crt_io.TlsContextOptions()
            options.override_default_trust_store_from_path(None, proxy.cafile)
            client._session_manager._tls_ctx = crt_io.ClientTlsContext(options)
            stream = await client.start_stream_transcription(media_sample_rate_hz=16_000, media_encoding="pcm", **kwargs)
            pcm = dtmf_pcm("427")
            for i in range(0, len(pcm), 3200):
                await stream.input_stream.send_audio_event(audio_chunk=pcm[i : i + 3200])
            await stream.input_stream.end_stream()
            finals = []
            async for event in stream.output_stream:
                for result in event.transcript.results:
                    if not result.is_partial:
                        finals.append(result)
            return stream.response, finals

        try:
            return asyncio.run(asyncio.wait_for(go(), SDK_TIMEOUT_S))
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"no complete stream within {SDK_TIMEOUT_S:.0f}s (the client needs HTTP/2; "
                "the proxy forwards it to the sandbox as cleartext HTTP/2)"
            ) from None

    def sdk_language_code(self):
        proxy = self._sdk_available()
        try:
            response, finals = self._sdk_run(proxy, language_code="en-US")
        except Exception as e:
            raise Fail(f"amazon-transcribe stream failed: {type(e).__name__}: {e}")
        text = " ".join(r.alternatives[0].transcript for r in finals if r.alternatives)
        problems = []
        if text != "four two seven":
            problems.append(f"final transcript {text!r}, want 'four two seven'")
        if response.media_sample_rate_hz != 16_000:
            problems.append(f"response.media_sample_rate_hz={response.media_sample_rate_hz!r} (header x-amzn-transcribe-sample-rate)")
        if response.media_encoding != "pcm":
            problems.append(f"response.media_encoding={response.media_encoding!r} (header x-amzn-transcribe-media-encoding)")
        if not response.request_id:
            problems.append("response.request_id is empty")
        if problems:
            raise Fail("amazon-transcribe over HTTP/2: " + "; ".join(problems))
        return f"HTTP/2 via TLS proxy: transcript {text!r}, sample rate and encoding parsed"

    def sdk_identify_language(self):
        proxy = self._sdk_available()
        try:
            response, finals = self._sdk_run(
                proxy, language_code=None, identify_language=True, language_options=["en-US", "es-US"]
            )
        except Exception as e:
            raise Fail(
                f"amazon-transcribe with identify_language=True (sends 'x-amzn-transcribe-identify-language: True') "
                f"failed: {type(e).__name__}: {e}"
            )
        text = " ".join(r.alternatives[0].transcript for r in finals if r.alternatives)
        if text != "four two seven":
            raise Fail(f"final transcript {text!r}, want 'four two seven'")
        langs = {r.language_code for r in finals}
        if not langs <= {"en-US", "es-US"}:
            raise Fail(f"result language codes {langs} not among the options")
        return f"identify_language=True accepted; transcript {text!r}, LanguageCode {sorted(langs)}"

    # ---- model-wide checks over every recorded response ----

    def recorded(self, service):
        return [r for r in RECORDS if r.service == service]

    def model_success(self, service):
        recs = [r for r in self.recorded(service) if r.status < 300]
        if not recs:
            raise Fail("no successful responses recorded")
        problems = []
        for rec in recs:
            problems += success_problems(rec)
        if problems:
            uniq = sorted(set(problems))
            raise Fail(f"{len(uniq)} problem(s) in {len(recs)} 2xx responses: " + "; ".join(uniq[:6]), uniq[6:12])
        ops = sorted({r.op for r in recs})
        return f"{len(recs)} 2xx responses of {len(ops)} operations validate against the {service} model"

    def model_errors(self, service, category, label):
        recs = [r for r in self.recorded(service) if is_api_error(r)]
        if not recs:
            raise Fail("no error responses recorded")
        problems = []
        for rec in recs:
            problems += error_problems(rec)[category]
        if problems:
            uniq = sorted(set(problems))
            raise Fail(f"{len(problems)}/{len(recs)} error responses: " + "; ".join(uniq[:5]), uniq[5:10])
        codes = sorted({error_code_of(r)[0] for r in recs})
        return f"{len(recs)} error responses ({', '.join(codes)}) {label}"

    def request_ids(self, service):
        recs = self.recorded(service)
        if not recs:
            raise Fail("no responses recorded")
        missing = [r for r in recs if not r.header("x-amzn-requestid")]
        if missing:
            ops = sorted({f"{r.op}/{r.status}" for r in missing})
            raise Fail(
                f"{len(missing)}/{len(recs)} responses lack x-amzn-RequestId: {', '.join(ops)}",
                [missing[0].describe()],
            )
        return f"all {len(recs)} responses (success and error) carry x-amzn-RequestId"


def main() -> int:
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PARLEY_SANDBOX_BIN", "")
    if not binary:
        print("usage: sandbox_conformance.py SANDBOX_BIN   (or set PARLEY_SANDBOX_BIN)", file=sys.stderr)
        return 2
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        report("FAIL", "harness.binary", f"{binary!r} is not an executable file")
        print("conformance: 0 passed, 1 failed")
        return 2

    sandbox = SandboxProcess(binary)
    suite_holder: list[Suite] = []

    def cleanup():
        if suite_holder and "proxy" in suite_holder[0].ctx:
            try:
                suite_holder[0].ctx["proxy"].stop()
            except Exception:
                pass
        sandbox.stop()

    atexit.register(cleanup)

    def on_signal(signum, _frame):
        cleanup()
        print(f"interrupted by signal {signum}", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    def on_watchdog():
        report("FAIL", "harness.watchdog", f"the run exceeded {WATCHDOG_S:g}s; sandbox killed")
        sandbox.stop()
        print("conformance: watchdog fired", flush=True)
        os._exit(3)

    watchdog = threading.Timer(WATCHDOG_S, on_watchdog)
    watchdog.daemon = True
    watchdog.start()
    started = time.monotonic()

    try:
        try:
            port = sandbox.start()
        except RuntimeError as e:
            report("FAIL", "harness.start", str(e))
            print("conformance: 0 passed, 1 failed")
            return 2
        report("PASS", "harness.start", f"{binary} listening on 127.0.0.1:{port}")
        s = Suite(port)
        suite_holder.append(s)

        print("--- happy path", flush=True)
        run_check("happy.StartChatContact", s.happy_start_chat)
        run_check("happy.StartContactStreaming", s.happy_start_streaming)
        run_check("happy.CreateParticipantConnection", s.happy_connection)
        run_check("happy.SendMessage", s.happy_send_message)
        run_check("happy.SendEvent.typing", s.happy_typing)
        run_check("happy.SendEvent.message.delivered", s.happy_delivered)
        run_check("happy.StartAttachmentUpload", s.happy_start_upload)
        run_check("happy.attachment.PUT", s.happy_put)
        run_check("happy.CompleteAttachmentUpload", s.happy_complete)
        run_check("happy.GetAttachment", s.happy_get_attachment)
        run_check("happy.attachment.download", s.happy_download)
        run_check("happy.sandbox-transcript", s.happy_control_transcript)
        run_check("happy.SendWhatsAppMessage", s.happy_whatsapp)

        print("--- timestamps", flush=True)
        run_check("timestamps.SendMessage.AbsoluteTime.ms", s.ts_check, "rec_send_message", "SendMessage", ["AbsoluteTime"])
        run_check("timestamps.SendEvent.AbsoluteTime.ms", s.ts_check, "rec_send_event", "SendEvent", ["AbsoluteTime"])
        run_check(
            "timestamps.CreateParticipantConnection.Expiry.ms",
            s.ts_check, "rec_connection", "CreateParticipantConnection", ["ConnectionCredentials", "Expiry"],
        )
        run_check(
            "timestamps.StartAttachmentUpload.UrlExpiry.ms",
            s.ts_check, "rec_start_upload", "StartAttachmentUpload", ["UploadMetadata", "UrlExpiry"],
        )
        run_check("timestamps.GetAttachment.UrlExpiry.ms", s.ts_check, "rec_get_attachment", "GetAttachment", ["UrlExpiry"])
        run_check("GetAttachment.UrlExpiryInSeconds", s.url_expiry_honoured)

        print("--- operations", flush=True)
        run_check("ops.connectparticipant.GetTranscript", s.op_get_transcript)
        run_check("ops.connect.DescribeContact", s.op_describe_contact)
        run_check("ops.connect.UpdateContactAttributes", s.op_update_attributes)
        run_check("ops.connect.StopContactStreaming", s.op_stop_streaming)
        run_check("ops.connect.StopContact", s.op_stop_contact)

        print("--- connections", flush=True)
        run_check("CreateParticipantConnection.WEBSOCKET+CONNECTION_CREDENTIALS", s.websocket, ["WEBSOCKET", "CONNECTION_CREDENTIALS"])
        run_check("CreateParticipantConnection.WEBSOCKET", s.websocket, ["WEBSOCKET"])
        run_check("token.refused-after-DisconnectParticipant", s.disconnect_refused)
        run_check("token.refused-after-StopContact", s.stop_contact_refused)
        run_check("token.refused-after-chat.ended", s.chat_ended_event_refused)

        print("--- SendMessage content limits", flush=True)
        for ctype in CHAT_CONTENT_TYPES:
            run_check(f"SendMessage.limit.{ctype}", s.content_limit, ctype)
        run_check("SendMessage.limit.counts-bytes", s.content_limit_bytes)
        run_check("StartChatContact.limit.InitialMessage", s.initial_message_limit)

        print("--- errors", flush=True)
        run_check("errors.connect.validation-codes", s.connect_validation)
        run_check("errors.connect.unknown-contact", s.connect_not_found)
        run_check("errors.connectparticipant.bad-token", s.participant_bad_token)
        run_check("errors.connect.Message-member", s.message_member_case, "connect")
        run_check("errors.connectparticipant.Message-member", s.message_member_case, "connectparticipant")
        run_check("errors.socialmessaging.validation", s.social_validation)
        for service in ("connect", "connectparticipant", "socialmessaging"):
            run_check(f"errors.{service}.malformed-json", s.malformed_json, service)
        for service in ("connect", "connectparticipant", "socialmessaging"):
            run_check(f"errors.{service}.missing-required-member", s.missing_member, service)

        print("--- throttling", flush=True)
        run_check(
            "throttle.socialmessaging.SendWhatsAppMessage",
            s.throttled,
            "SendWhatsAppMessage",
            lambda: api(
                s.social,
                "send_whatsapp_message",
                originationPhoneNumberId=ORIGINATION,
                message=b'{"messaging_product":"whatsapp","to":"14255550123","type":"text","text":{"body":"x"}}',
                metaApiVersion=META_API_VERSION,
            ),
            "ThrottledRequestException",
        )
        run_check(
            "throttle.connect.StartChatContact",
            s.throttled,
            "StartChatContact",
            lambda: api(
                s.connect,
                "start_chat_contact",
                InstanceId=INSTANCE_ID,
                ContactFlowId=CONTACT_FLOW_ID,
                ParticipantDetails={"DisplayName": "Throttled"},
            ),
            "LimitExceededException",
        )
        throttle_chat = {}

        def throttled_send():
            return s.send_text(throttle_chat["connection_token"], "throttled?")

        def throttle_participant():
            throttle_chat.update(s.new_chat("Throttled Participant"))
            return s.throttled("SendMessage", throttled_send, "ThrottlingException")

        run_check("throttle.connectparticipant.SendMessage", throttle_participant)

        print("--- transcribe streaming", flush=True)
        run_check("transcribe.raw.language-code-stream", s.transcribe_language_code)
        run_check("transcribe.raw.response-headers", s.transcribe_response_headers)
        run_check("transcribe.raw.identify-language-header-case", s.transcribe_identify_case)
        run_check("transcribe.raw.LanguageIdentification", s.transcribe_language_identification)
        run_check("transcribe.raw.bad-request", s.transcribe_bad_request)
        run_check("transcribe.sdk.language-code", s.sdk_language_code)
        run_check("transcribe.sdk.identify-language", s.sdk_identify_language)

        # Expires every connection in the sandbox: keep it last of the calls.
        run_check("token.refused-when-expired", s.expired_refused)

        print("--- model conformance over every recorded response", flush=True)
        for service in ("connect", "connectparticipant", "socialmessaging"):
            run_check(f"model.{service}.success-responses", s.model_success, service)
            run_check(
                f"model.{service}.error-codes",
                s.model_errors, service, "code",
                "all carry x-amzn-ErrorType with a code modeled for the operation (or common)",
            )
            run_check(
                f"model.{service}.error-http-status",
                s.model_errors, service, "status", "use the modeled HTTP status",
            )
            member = service_message_member(service)
            run_check(
                f"model.{service}.error-message-member",
                s.model_errors, service, "member", f"carry the modeled message member {member!r}",
            )
            run_check(f"headers.{service}.x-amzn-RequestId", s.request_ids, service)
    finally:
        watchdog.cancel()
        cleanup()

    passed = sum(1 for r in RESULTS if r[0] == "PASS")
    failed = [r for r in RESULTS if r[0] == "FAIL"]
    skipped = sum(1 for r in RESULTS if r[0] == "SKIP")
    print(f"--- summary ({time.monotonic() - started:.1f}s)")
    for _, name, reason in failed:
        print(f"  FAILED {name}: {one_line(reason, 200)}")
    tail = f", {skipped} skipped" if skipped else ""
    print(f"conformance: {passed} passed, {len(failed)} failed{tail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
