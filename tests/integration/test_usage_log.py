"""The usage log (one JSON record per finished request, written by a thread
of its own, reopened on SIGUSR1 and SIGHUP) and access_log_format = json."""
import json
import os
import signal
import threading
import time

from harness import CLIENT_KEY, OTHER_KEY, UPSTREAM_KEY, base_conf

FIELDS = {"time", "key", "team", "user", "model", "served_model", "backend", "status", "end", "outcome",
          "attempts", "stream", "input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens",
          "cost_usd",
          "ttfb_ms", "duration_ms", "queued_ms", "path", "request_id"}


def records(path, n, timeout=10):
    deadline = time.time() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n or time.time() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)


PRICED = "[model gpt-4o]\ninput_price = 2.50\noutput_price = 10\n"


def test_one_record_per_request(tmp, mock, start_sluice):
    log = tmp / "usage.jsonl"
    s = start_sluice(base_conf(mock.url, extra_server=f"usage_log = {log}\naccess_log = off",
                               key_extra="rpm = 3", extra=PRICED))
    assert s.chat().status == 200
    status, events = s.stream_events(headers={"x-mock-completion-tokens": "5"},
                                     body={"model": "gpt-4o", "stream": True,
                                           "stream_options": {"include_usage": True},
                                           "messages": [{"role": "user", "content": "x"}]})
    assert status == 200
    assert s.chat(headers={"x-mock-status": "500"}).status == 500
    assert s.chat().status == 429  # rpm = 3
    got = records(log, 4)
    assert len(got) == 4
    for r in got:
        assert set(r) == FIELDS
        assert r["key"] == "team-a" and r["team"] == "-" and r["path"] == "/v1/chat/completions"
        assert r["time"].endswith("Z") and r["duration_ms"] >= 0
    ok, streamed, failed, limited = got
    assert ok["status"] == 200 and ok["end"] == "responded" and ok["outcome"] == "success"
    assert ok["model"] == "gpt-4o" and ok["backend"] == "main" and ok["stream"] is False
    assert ok["input_tokens"] > 0 and ok["output_tokens"] == 8
    assert abs(ok["cost_usd"] - (ok["input_tokens"] * 2.5 + 8 * 10) / 1e6) < 1e-6
    assert streamed["stream"] is True and streamed["output_tokens"] == 5
    assert failed["status"] == 500 and failed["end"] == "upstream_error"
    assert limited["status"] == 429 and limited["end"] == "rate_limited" and limited["attempts"] == 0
    assert limited["backend"] == "-" and limited["outcome"] == "-"
    text = log.read_text()
    assert CLIENT_KEY not in text and UPSTREAM_KEY not in text


def test_access_log_as_json(tmp, mock, start_sluice):
    s = start_sluice(base_conf(mock.url, extra_server="access_log_format = json"))
    assert s.chat().status == 200
    assert s.chat(key=OTHER_KEY, body={"model": "gpt-4o-mini",
                                       "messages": [{"role": "user", "content": "hi"}]}).status == 200
    deadline = time.time() + 5
    lines = []
    while len(lines) < 2 and time.time() < deadline:
        lines = [json.loads(line) for line in s.log_text().splitlines() if line.startswith("{")]
        time.sleep(0.05)
    assert [(r["key"], r["model"], r["status"]) for r in lines] == [
        ("team-a", "gpt-4o", 200), ("team-b", "gpt-4o-mini", 200)]
    assert set(lines[0]) == FIELDS
    assert " info access " not in s.log_text()


def test_rotation_on_sigusr1_and_sighup(tmp, mock, start_sluice):
    log = tmp / "usage.jsonl"
    s = start_sluice(base_conf(mock.url, extra_server=f"usage_log = {log}"))
    for _ in range(3):
        assert s.chat().status == 200
    assert len(records(log, 3)) == 3
    os.rename(log, tmp / "usage.jsonl.1")  # what logrotate does
    s.proc.send_signal(signal.SIGUSR1)
    deadline = time.time() + 5
    while not log.exists() and time.time() < deadline:
        time.sleep(0.02)
    for _ in range(2):
        assert s.chat().status == 200
    assert len(records(log, 2)) == 2
    assert len(records(tmp / "usage.jsonl.1", 3)) == 3  # nothing more went to the moved file
    os.rename(log, tmp / "usage.jsonl.2")
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "reloaded" not in s.log_text() and time.time() < deadline:
        time.sleep(0.02)
    assert s.chat().status == 200
    assert len(records(log, 1)) == 1
    assert len(records(tmp / "usage.jsonl.2", 2)) == 2


def test_a_stuck_writer_does_not_hold_up_requests(tmp, mock, start_sluice):
    """The usage log is a pipe nobody reads: the writer thread blocks once the
    pipe's 64 KB are full, and requests go on being answered at once."""
    fifo = tmp / "usage.fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader that does not read yet
    s = start_sluice(base_conf(mock.url, extra_server=f"usage_log = {fifo}\naccess_log = off"))
    n = 400  # ~400 bytes each: well past the pipe's buffer
    start = time.time()
    conn = s.conn()
    for _ in range(n):
        assert s.chat(conn=conn).status == 200
    assert time.time() - start < 20
    got = b""
    deadline = time.time() + 10
    while got.count(b"\n") < n and time.time() < deadline:
        try:
            got += os.read(fd, 1 << 20)
        except BlockingIOError:
            time.sleep(0.02)
    os.close(fd)
    lines = got.splitlines()
    assert len(lines) == n and all(json.loads(line)["status"] == 200 for line in lines)
    assert "sluice_usage_records_dropped_total 0" in s.request("GET", "/metrics", key=None).body.decode()


def test_json_access_lines_stay_whole_for_the_longest_names(mock, start_sluice):
    """The longest model name a client may send, every character escaped in
    JSON, and the longest path: each access line is still one JSON object
    with its status and cost (issue #28, finding 10: a 256-character name of
    U+0001 cut the line at 2,047 bytes; a control character is now refused
    with 400, and its line has no model)."""
    s = start_sluice(base_conf(mock.url, extra_server="access_log_format = json",
                               extra="[model gpt-4o]\ninput_price = 1\noutput_price = 1\n"))
    quotes = '"' * 256  # 512 bytes once escaped
    assert s.chat(body={"model": quotes, "messages": [{"role": "user", "content": "hi"}]}).status == 200
    ctrl = "\u0001" * 256
    assert s.chat(body={"model": ctrl, "messages": [{"role": "user", "content": "hi"}]}).status == 400
    long_path = "/v1/" + "a" * 250
    assert s.request("POST", long_path, {"model": "gpt-4o", "x": 1}).status == 200
    deadline = time.time() + 5
    lines = []
    while len(lines) < 3 and time.time() < deadline:
        lines = [json.loads(line) for line in s.log_text().splitlines() if line.startswith("{")]
        time.sleep(0.05)
    assert [(r["status"], r["end"]) for r in lines] == [(200, "responded"), (400, "refused"), (200, "responded")]
    assert lines[0]["model"] == quotes and "cost_usd" in lines[0]
    assert lines[1]["model"] == "-"
    assert lines[2]["path"] == long_path
