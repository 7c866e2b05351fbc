"""Operations: metrics agree with what clients saw, readiness, reload under
traffic, drain, several workers."""
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from harness import CLIENT_KEY, OTHER_KEY, UPSTREAM_KEY, base_conf, free_port


def scrape(s):
    r = s.request("GET", "/metrics", key=None)
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in r.body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-z_]+)(\{(.*)\})? ([0-9.e+-]+)', line)
        assert m, f"not exposition format: {line!r}"
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        samples[(m.group(1), tuple(sorted(labels.items())))] = float(m.group(4))
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def test_metrics_match_traffic(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, extra_backend="models = gpt-4o, gpt-4o-mini", key_extra="rpm = 5"))
    codes = [s.chat().status for _ in range(7)]  # 5 ok, 2 limited
    s.chat(key="sk-unknown-key-000")
    s.chat({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}, key=OTHER_KEY)
    s.chat({"model": "weird-model-from-client", "messages": [{"role": "user", "content": "x"}]}, key=OTHER_KEY)
    s.chat({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}, key=OTHER_KEY,
           headers={"x-mock-status": "500"})
    assert codes == [200] * 5 + [429] * 2
    m = scrape(s)
    assert value(m, "sluice_requests_total", key="team-a", model="gpt-4o", served_model="gpt-4o", backend="main", code="200") == 5
    assert value(m, "sluice_requests_total", key="team-a", model="gpt-4o", served_model="-", backend="-", code="429") == 2
    assert value(m, "sluice_requests_total", key="-", model="-", served_model="-", backend="-", code="401") == 1
    assert value(m, "sluice_requests_total", key="team-b", model="gpt-4o-mini", served_model="gpt-4o-mini", backend="main", code="200") == 1
    assert value(m, "sluice_requests_total", key="team-b", model="other", served_model="-", backend="-", code="403") == 1
    assert value(m, "sluice_requests_total", key="team-b", model="gpt-4o-mini", served_model="gpt-4o-mini", backend="main", code="500") == 1
    assert not any("weird-model" in str(k) for k in m)  # client input never becomes a label
    assert value(m, "sluice_rate_limited_total", key="team-a", dimension="requests") == 2
    assert value(m, "sluice_tokens_total", key="team-a", model="gpt-4o", direction="input") == 5 * 2
    assert value(m, "sluice_tokens_total", key="team-a", model="gpt-4o", direction="output") == 5 * 8
    assert value(m, "sluice_upstream_attempts_total", backend="main", outcome="success") == 6
    # the 500 was sent to the same backend once more before it was passed through
    assert value(m, "sluice_upstream_attempts_total", backend="main", outcome="error_status") == 2
    assert value(m, "sluice_request_duration_seconds_count") == 11
    assert value(m, "sluice_request_duration_seconds_bucket", le="+Inf") == 11
    assert value(m, "sluice_upstream_ttfb_seconds_count", backend="main") == 8
    assert value(m, "sluice_backend_state", backend="main") == 0  # two failures of 3 do not open it
    assert value(m, "sluice_inflight_requests") == 0
    assert value(m, "sluice_redis_errors_total") == 0


def test_retries_and_breaker_state_in_metrics(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    conf = (f"[server]\nlisten = 127.0.0.1:{{port}}\n[backend a]\nurl = {a.url}\napi_key = {UPSTREAM_KEY}\n"
            f"priority = 1\nbreaker_failures = 1\nbreaker_trip = 60s\n[backend b]\nurl = {b.url}\n"
            f"api_key = {UPSTREAM_KEY}\npriority = 2\n[key k]\nkey = {CLIENT_KEY}\n")
    s = start_sluice(conf)
    a.configure(status=503)
    assert s.chat().status == 200
    m = scrape(s)
    assert value(m, "sluice_retries_total", backend="a") == 1
    # the model's breaker on a (gpt-4o is in no [model] section: the `*` set); a's own stays closed
    assert value(m, "sluice_backend_model_state", backend="a", model="*") == 1
    assert value(m, "sluice_backend_state", backend="a") == 0
    assert value(m, "sluice_backend_state", backend="b") == 0
    assert ("sluice_backend_model_state", (("backend", "b"), ("model", "*"))) not in m  # never opened
    # models = *: the name the client sent is the label (issue #14)
    assert value(m, "sluice_requests_total", key="k", model="gpt-4o", served_model="gpt-4o", backend="b", code="200") == 1


def test_readyz(start_mock, redis, start_sluice):
    m = start_mock()
    conf = base_conf(m.url, extra_backend="breaker_failures = 1\nbreaker_trip = 60s", extra="[model gpt-4o]\n")
    # on_error = deny: a Redis outage stops this node (with local or allow it does not)
    s = start_sluice(conf + f"\n[redis]\nurl = {redis.url}\non_error = deny\n")
    assert s.request("GET", "/readyz", key=None).status == 200
    redis.stop()
    time.sleep(0.3)
    r = s.request("GET", "/readyz", key=None)
    assert r.status == 503 and r.json()["redis"] == "down"
    redis.start()
    deadline = time.time() + 5
    while time.time() < deadline and s.request("GET", "/readyz", key=None).status != 200:
        time.sleep(0.1)
    assert s.request("GET", "/readyz", key=None).status == 200
    s.chat(headers={"x-mock-status": "500"})  # opens the model's breaker: other models go on
    assert s.request("GET", "/readyz", key=None).status == 200
    m.stop()
    s.chat({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})  # a connection
    # failure (another model: gpt-4o's breaker is open) opens the only backend
    r = s.request("GET", "/readyz", key=None)
    assert r.status == 503 and r.json()["backends"] == "all open"


def hup_and_wait(s, marker):
    before = s.log_text().count(marker)
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while time.time() < deadline and s.log_text().count(marker) == before:
        time.sleep(0.02)
    time.sleep(0.1)  # the workers swap on their next loop turn
    assert s.log_text().count(marker) > before


def test_reload_good_and_bad_under_traffic(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, key_extra="rpm = 10"))
    stop = threading.Event()
    seen = []

    def traffic():
        c = s.conn()
        while not stop.is_set():
            seen.append(s.chat({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                               key=OTHER_KEY, conn=c).status)
        c.close()

    t = threading.Thread(target=traffic)
    t.start()
    try:
        assert [s.chat().status for _ in range(3)] == [200] * 3
        started = value(scrape(s), "sluice_config_last_reload_success_timestamp_seconds")
        assert abs(started - time.time()) < 60
        new_key = "sk-added-by-reload-0001"
        good = base_conf(mock.url, key_extra="rpm = 5") + f"\n[key added]\nkey = {new_key}\n"
        s.conf.write_text(good.replace("{port}", str(s.port)))
        hup_and_wait(s, "reloaded")
        assert s.chat(key=new_key).status == 200  # added keys work at once
        # The counters survived: 3 used before, the new limit is 5.
        assert [s.chat().status for _ in range(3)] == [200, 200, 429]
        s.conf.write_text("[server]\nlisten = 127.0.0.1:1\nbogus = 1\n")
        hup_and_wait(s, "reload of")
        log = s.log_text()
        assert f"{s.conf}:3: unknown key 'bogus'" in log
        assert "still serving the previous configuration" in log
        assert s.chat(key=new_key).status == 200  # the old (good) config still serves
        s.conf.write_text(base_conf(mock.url).replace("{port}", str(s.port)))
        hup_and_wait(s, "reloaded")
        assert s.chat(key=new_key).status == 401  # removed keys stop at once
        # failed reloads are counted (issue #28, finding 10): an alert can see them
        m = scrape(s)
        assert value(m, "sluice_config_reloads_total", result="ok") == 2
        assert value(m, "sluice_config_reloads_total", result="failed") == 1
        assert value(m, "sluice_config_last_reload_success_timestamp_seconds") >= started
    finally:
        stop.set()
        t.join()
    assert len(seen) > 20 and set(seen) == {200}  # no request failed across three reloads


def test_in_flight_request_finishes_on_its_config(start_mock, start_sluice):
    m = start_mock()
    s = start_sluice(base_conf(m.url))
    result = {}

    def slow():
        result["r"] = s.chat(headers={"x-mock-delay-ms": "800"})

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    s.conf.write_text(base_conf(f"http://127.0.0.1:{free_port()}/v1").replace("{port}", str(s.port)))
    hup_and_wait(s, "reloaded")
    assert s.chat().status == 502  # new requests use the new (dead) backend
    t.join()
    assert result["r"].status == 200  # the one in flight finished where it started


def test_workers_share_limits_breakers_and_metrics(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, extra_server="workers = 2", key_extra="rpm = 40"))

    def one(_):
        return s.chat().status

    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(one, range(120)))
    assert statuses.count(200) == 40 and statuses.count(429) == 80
    deadline = time.time() + 5  # a request is counted just after its answer leaves
    while True:
        m = scrape(s)
        total = sum(v for (name, labels), v in m.items() if name == "sluice_requests_total")
        if total == 120 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert total == 120
    assert mock.stats()["requests"] == 40
    assert "2 workers" in s.log_text()


def test_sigterm_drains_streams_on_all_workers(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, extra_server="workers = 2\nshutdown_timeout = 10s"))
    import json as _json
    conns = []
    for _ in range(6):
        c = s.conn(timeout=15)
        c.request("POST", "/v1/chat/completions",
                  body=_json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}),
                  headers={"Authorization": f"Bearer {CLIENT_KEY}", "x-mock-chunk-delay-ms": "100",
                           "x-mock-completion-tokens": "8"})
        conns.append((c, c.getresponse()))
    time.sleep(0.2)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:  # no longer accepting
        refused = s.chat().status
    except OSError:
        refused = "refused"
    assert refused == "refused"
    for c, r in conns:
        assert r.read().decode().rstrip().endswith("data: [DONE]")
        c.close()
    assert s.proc.wait(10) == 0


def test_shutdown_timeout_cuts_what_is_left(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, extra_server="shutdown_timeout = 500ms"))
    c = s.conn(timeout=10)
    c.request("POST", "/v1/chat/completions", body='{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}',
              headers={"Authorization": f"Bearer {CLIENT_KEY}", "x-mock-hang": "1"})
    time.sleep(0.2)
    start = time.time()
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(5) == 0
    assert time.time() - start < 1.5
    c.close()


ADMIN_KEY = "sk-admin-key-for-tests-0001"


def admin_conf(mock, redis=None, limits="rpm = 10\ninput_tpm = 1000\noutput_tpm = 100"):
    conf = base_conf(mock.url, extra_server=f"admin_key = {ADMIN_KEY}", key_extra=limits)
    if redis:
        conf += f"\n[redis]\nurl = {redis.url}\n"
    return conf


def key_view(s, name="team-a", key=ADMIN_KEY):
    return s.request("GET", f"/admin/keys/{name}", key=key)


def test_admin_key_view_local_and_redis(mock, redis, start_sluice):
    for r in (None, redis):
        s = start_sluice(admin_conf(mock, r))
        s.chat()
        s.chat()
        v = key_view(s)
        assert v.status == 200, v.body
        body = v.json()
        assert body["limiter"] == ("redis" if r else "local")
        assert body["source"] == "config"
        assert body["requests"] == {"limit": 10, "used": 2, "remaining": 8, "reset_ms": body["requests"]["reset_ms"]}
        assert body["input_tokens"]["used"] == 4  # corrected to the mock's usage: 2 each
        assert body["output_tokens"]["used"] == 16
        assert 59000 <= body["requests"]["reset_ms"] <= 61000
        # The view reads the same state the limiter uses: the next request agrees.
        assert s.chat().headers["x-ratelimit-remaining-requests"] == "7"
        assert key_view(s, "team-b").json()["requests"]["limit"] == 0
        assert key_view(s, "team-b").json()["requests"]["remaining"] is None


def test_admin_auth(mock, start_sluice):
    s = start_sluice(admin_conf(mock))
    assert key_view(s, key=None).status == 401
    assert key_view(s, key="sk-admin-key-for-tests-0002").status == 401
    assert key_view(s, key="sk-test-client-key-0001").status == 401  # a client key is not an admin key
    assert key_view(s, "nobody").status == 404
    assert s.request("POST", "/admin/keys/team-a", key=ADMIN_KEY).status == 405
    plain = start_sluice(base_conf(mock.url))
    r = key_view(plain)
    assert r.status == 404 and "off" in r.error()["message"]


def test_embeddings_and_responses_are_counted(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, key_extra="input_tpm = 1000\noutput_tpm = 1000"))
    r = s.request("POST", "/v1/embeddings", {"model": "gpt-4o", "input": ["a b", "c"]})
    assert r.status == 200
    r = s.request("POST", "/v1/responses", {"model": "gpt-4o", "input": "one two three four"},
                  headers={"x-mock-completion-tokens": "5"})
    assert r.status == 200
    c = s.conn()
    c.request("POST", "/v1/responses", body='{"model":"gpt-4o","input":"x y","stream":true}',
              headers={"Authorization": f"Bearer {CLIENT_KEY}", "x-mock-completion-tokens": "6"})
    c.getresponse().read()
    c.close()
    m = scrape(s)
    # embeddings: 3 prompt words; responses: 4 + 2 input, 5 + 6 output (streamed usage too)
    assert value(m, "sluice_tokens_total", key="team-a", model="gpt-4o", direction="input") == 3 + 4 + 2
    assert value(m, "sluice_tokens_total", key="team-a", model="gpt-4o", direction="output") == 5 + 6
    r = s.chat()
    assert r.headers["x-ratelimit-remaining-tokens"] == str(1000 - 9 - 9)  # 9 recorded + this one's 9
    assert r.headers["x-ratelimit-remaining-output-tokens"] == str(1000 - 11)


def test_model_labels_for_star_backends_are_bounded(mock, start_sluice):
    """models = *: the first max_model_labels distinct names clients call get
    labels of their own, the rest count as other; names sluice refused never
    become labels."""
    s = start_sluice(base_conf(mock.url, extra_server="max_model_labels = 3"))
    for name in ("llama-3-70b", "mistral-large", "meta-llama/Llama-3-8B", "qwen-72b", "phi-3", "llama-3-70b"):
        assert s.chat({"model": name, "messages": [{"role": "user", "content": "x"}]}).status == 200
    assert s.chat({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                  key=OTHER_KEY).status == 200  # a name the config lists is always its own
    m = scrape(s)
    for name, n in (("llama-3-70b", 2), ("mistral-large", 1), ("meta-llama/Llama-3-8B", 1), ("other", 2)):
        assert value(m, "sluice_requests_total", key="team-a", model=name, served_model=name, backend="main", code="200") == n, name
    assert value(m, "sluice_requests_total", key="team-b", model="gpt-4o-mini", served_model="gpt-4o-mini", backend="main", code="200") == 1
    assert not any("qwen" in str(k) or "phi" in str(k) for k in m)
