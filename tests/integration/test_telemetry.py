"""[telemetry]: a trace per request over OTLP/HTTP with JSON encoding,
received here by a collector that checks every payload against the OTLP
JSON encoding (ids as hex of the right length, 64-bit integers as decimal
strings, enum values, attribute value types), the GenAI attributes, the W3C
trace context continued from the client and sent upstream, sampling, and a
collector that is down or slow never holding a request."""
import http.server
import json
import re
import threading
import time

import pytest

from harness import base_conf

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
NANOS = re.compile(r"^[0-9]{19}$")
VALUE_KINDS = {"stringValue": str, "intValue": str, "doubleValue": (int, float), "boolValue": bool}


def check_value(v):
    assert isinstance(v, dict) and len(v) == 1, v
    (kind, x), = v.items()
    assert kind in VALUE_KINDS and isinstance(x, VALUE_KINDS[kind]), v
    if kind == "intValue":
        assert re.fullmatch(r"-?[0-9]+", x), v


def check_attributes(attrs):
    assert isinstance(attrs, list)
    keys = [a["key"] for a in attrs]
    assert len(keys) == len(set(keys)), keys
    for a in attrs:
        assert set(a) == {"key", "value"} and isinstance(a["key"], str) and a["key"]
        check_value(a["value"])


def check_otlp(payload):
    """ExportTraceServiceRequest in OTLP/JSON (opentelemetry-proto's JSON mapping)."""
    assert set(payload) == {"resourceSpans"}
    spans = []
    for rs in payload["resourceSpans"]:
        assert set(rs) <= {"resource", "scopeSpans", "schemaUrl"}
        check_attributes(rs["resource"]["attributes"])
        for ss in rs["scopeSpans"]:
            assert set(ss) <= {"scope", "spans", "schemaUrl"}
            assert isinstance(ss["scope"]["name"], str)
            for s in ss["spans"]:
                allowed = {"traceId", "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano",
                           "endTimeUnixNano", "attributes", "status", "traceState", "events", "links",
                           "flags", "droppedAttributesCount"}
                assert set(s) <= allowed, set(s) - allowed
                assert HEX32.match(s["traceId"]) and s["traceId"] != "0" * 32
                assert HEX16.match(s["spanId"]) and s["spanId"] != "0" * 16
                if "parentSpanId" in s:
                    assert HEX16.match(s["parentSpanId"])
                assert isinstance(s["name"], str) and s["name"]
                assert s["kind"] in (0, 1, 2, 3, 4, 5)
                assert NANOS.match(s["startTimeUnixNano"]) and NANOS.match(s["endTimeUnixNano"])
                assert int(s["startTimeUnixNano"]) <= int(s["endTimeUnixNano"])
                assert abs(int(s["startTimeUnixNano"]) / 1e9 - time.time()) < 300
                check_attributes(s["attributes"])
                assert set(s["status"]) <= {"code", "message"} and s["status"]["code"] in (0, 1, 2)
                spans.append({**s, "attrs": {a["key"]: next(iter(a["value"].values()))
                                             for a in s["attributes"]},
                              "resource": {a["key"]: next(iter(a["value"].values()))
                                           for a in rs["resource"]["attributes"]}})
    return spans


class Collector:
    """An OTLP/HTTP receiver on a free loopback port: POST /v1/traces."""

    def __init__(self, delay=0.0, status=200):
        self.spans, self.posts, self.errors = [], 0, []
        self.delay, self.status = delay, status
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    assert self.path == "/v1/traces", self.path
                    assert self.headers["Content-Type"] == "application/json"
                    spans = check_otlp(json.loads(body))
                    outer.spans += spans
                except Exception as e:  # noqa: BLE001 - reported by the test
                    outer.errors.append(repr(e))
                outer.posts += 1
                time.sleep(outer.delay)
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n, timeout=10):
        deadline = time.time() + timeout
        while len(self.spans) < n and time.time() < deadline:
            time.sleep(0.05)
        assert not self.errors, self.errors
        return self.spans

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.stop()


def tel_conf(mock, endpoint, extra=""):
    return base_conf(mock.url, extra=f"[telemetry]\notlp_endpoint = {endpoint}\nflush_interval = 200ms\n{extra}",
                     key_extra="team = platform\nrpm = 2\ntrust_user = header", ) + "\n[team platform]\nrpm = 100000\n"


def by_trace(spans):
    out = {}
    for s in spans:
        out.setdefault(s["traceId"], []).append(s)
    return out


def test_a_trace_per_request_with_genai_attributes(mock, collector, start_sluice):
    s = start_sluice(tel_conf(mock, f"http://127.0.0.1:{collector.port}"))
    assert s.chat(headers={"x-sluice-user": "ann@example.com"}).status == 200
    status, _ = s.stream_events(body={"model": "gpt-4o", "stream": True,
                                      "stream_options": {"include_usage": True},
                                      "messages": [{"role": "user", "content": "x"}]})
    assert status == 200
    assert s.chat().status == 429  # rpm = 2: refused by the limiter, no attempt
    spans = collector.wait(3 + 3 + 2)
    traces = list(by_trace(spans).values())
    assert len(traces) == 3
    users = [x["attrs"].get("user.id") for x in spans if "parentSpanId" not in x]
    assert users.count("ann@example.com") == 1 and users.count(None) == 2  # the end user, where named
    for t in traces:
        root = [x for x in t if "parentSpanId" not in x]
        assert len(root) == 1
        root = root[0]
        assert root["kind"] == 2 and root["name"] == "chat gpt-4o"
        assert root["resource"]["service.name"] == "sluice"
        a = root["attrs"]
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "gpt-4o"
        assert a["sluice.key"] == "team-a" and a["sluice.team"] == "platform"
        assert a["url.path"] == "/v1/chat/completions" and a["http.request.method"] == "POST"
        children = [x for x in t if x.get("parentSpanId") == root["spanId"]]
        assert len(children) == len(t) - 1
        limiter = [x for x in children if x["name"] == "sluice.limiter"]
        assert len(limiter) == 1 and limiter[0]["attrs"]["sluice.limiter"] == "local"
        for c in children:  # inside the request's span
            assert int(root["startTimeUnixNano"]) <= int(c["startTimeUnixNano"])
            assert int(c["endTimeUnixNano"]) <= int(root["endTimeUnixNano"])
    ok, streamed, refused = sorted(traces, key=lambda t: min(int(x["startTimeUnixNano"]) for x in t))
    root = next(x for x in ok if x["kind"] == 2)["attrs"]
    assert root["http.response.status_code"] == "200" and root["gen_ai.response.model"] == "gpt-4o"
    assert int(root["gen_ai.usage.input_tokens"]) > 0 and root["gen_ai.usage.output_tokens"] == "8"
    assert root["sluice.backend"] == "main" and root["sluice.attempts"] == "1"
    attempt = next(x for x in ok if x["kind"] == 3)
    assert attempt["name"] == "upstream main" and attempt["attrs"]["sluice.outcome"] == "success"
    assert attempt["attrs"]["http.response.status_code"] == "200" and attempt["status"]["code"] == 0
    assert next(x for x in streamed if x["kind"] == 2)["attrs"]["sluice.stream"] is True
    r = next(x for x in refused if x["kind"] == 2)
    assert r["attrs"]["http.response.status_code"] == "429" and r["attrs"]["sluice.end"] == "rate_limited"
    lim = next(x for x in refused if x["name"] == "sluice.limiter")["attrs"]
    assert lim["sluice.admitted"] is False and lim["sluice.rate_limited.dimension"] == "requests"
    assert not [x for x in refused if x["kind"] == 3]
    # Counted when the collector's answer reaches sluice, which is after the
    # collector has the spans: wait for it, bounded.
    deadline = time.time() + 5
    while "sluice_trace_spans_exported_total 8" not in (text := s.request("GET", "/metrics", key=None).body.decode()):
        assert time.time() < deadline, text[-400:]
        time.sleep(0.02)


def test_traceparent_is_continued_and_sent_upstream(mock, collector, start_sluice):
    s = start_sluice(tel_conf(mock, f"http://127.0.0.1:{collector.port}", "sample_ratio = 0"))
    trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    h = {"traceparent": f"00-{trace}-{parent}-01", "x-mock-status": "500"}
    # One backend: the 500 and its second chance there, each attempt's span the upstream's parent.
    assert s.chat(headers=h).status == 500
    sent = mock.last()["headers"]
    tp = next(v for k, v in sent.items() if k.lower() == "traceparent")
    m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", tp)
    assert m and m.group(1) == trace and m.group(2) != parent
    spans = collector.wait(4)
    assert {x["traceId"] for x in spans} == {trace}
    root = next(x for x in spans if x["kind"] == 2)
    assert root["parentSpanId"] == parent and root["status"]["code"] == 2
    attempts = [x for x in spans if x["kind"] == 3]
    assert len(attempts) == 2 and attempts[0]["spanId"] != attempts[1]["spanId"]
    attempt = next(x for x in attempts if x["spanId"] == m.group(2))  # the last one sent
    assert attempt["parentSpanId"] == root["spanId"]
    assert all(x["attrs"]["sluice.outcome"] != "success" and x["status"]["code"] == 2 for x in attempts)
    # Sampled out by the client (flags 00): propagated, not recorded.
    n = len(collector.spans)
    h = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-00"}
    assert s.chat(headers=h).status == 200
    tp = next(v for k, v in mock.last()["headers"].items() if k.lower() == "traceparent")
    assert tp.startswith(f"00-{'1' * 32}-") and tp.endswith("-00")
    # No traceparent and sample_ratio = 0: a new trace, propagated, not recorded.
    assert s.chat().status in (200, 429)
    tp = next(v for k, v in mock.last()["headers"].items() if k.lower() == "traceparent")
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-00", tp)
    time.sleep(0.6)
    assert len(collector.spans) == n
    # A malformed traceparent is not continued.
    assert s.chat(headers={"traceparent": f"00-{trace.upper()}-{parent}-01"}).status in (200, 429)
    tp = next(v for k, v in mock.last()["headers"].items() if k.lower() == "traceparent")
    assert trace not in tp


def test_sample_ratio(mock, collector, start_sluice):
    s = start_sluice(tel_conf(mock, f"http://127.0.0.1:{collector.port}", "sample_ratio = 0.5").replace(
        "rpm = 2", "rpm = 1000"))
    conn = s.conn()
    for _ in range(200):
        assert s.chat(conn=conn).status == 200
    time.sleep(0.8)
    traces = len(by_trace(collector.wait(1)))
    assert 60 <= traces <= 140, traces  # binomial(200, 0.5): far outside 6 sigma otherwise


def test_collector_down_or_slow_never_holds_a_request(mock, start_sluice):
    slow = Collector(delay=3.0)
    try:
        s = start_sluice(tel_conf(mock, f"http://127.0.0.1:{slow.port}", "max_queue = 30").replace(
            "rpm = 2", "rpm = 1000"))
        conn = s.conn()
        start = time.time()
        for _ in range(60):  # 3 spans each; one export hangs 3 s meanwhile
            assert s.chat(conn=conn).status == 200
        assert time.time() - start < 3
        text = s.request("GET", "/metrics", key=None).body.decode()
        dropped = int(re.search(r"sluice_trace_spans_dropped_total (\d+)", text).group(1))
        assert dropped >= 60 * 3 - 30 - 30  # at most max_queue waiting and max_queue in flight
    finally:
        slow.stop()
    # Nobody listening at all: requests are served, the failure is logged once.
    s2 = start_sluice(tel_conf(mock, "http://127.0.0.1:9", "").replace("rpm = 2", "rpm = 1000"))
    for _ in range(5):
        assert s2.chat().status == 200
    time.sleep(1.5)
    assert s2.log_text().count("telemetry: export to") == 1


def test_spans_queued_during_a_slow_export_follow_it(mock, start_sluice):
    """Spans that arrive while a post is out (its timer fired meanwhile) go
    as soon as that post is back, with no further request to push them."""
    slow = Collector(delay=1.5)
    try:
        s = start_sluice(tel_conf(mock, f"http://127.0.0.1:{slow.port}").replace("rpm = 2", "rpm = 1000"))
        assert s.chat().status == 200
        time.sleep(0.5)  # its 3 spans are out, the collector holds the post for 1.5 s
        for _ in range(5):
            assert s.chat().status == 200
        time.sleep(0.5)  # their flush time passes while the first post is still out
        spans = slow.wait(18, timeout=8)
        assert len(spans) == 18 and slow.posts == 2
    finally:
        slow.stop()
