"""Every call an SDK makes: multipart uploads forwarded byte for byte and
routed by their model field, stored resources and calls without a model on
the stateful backend, GET and DELETE, and a clear error for a body that is
neither JSON nor multipart."""
import json
import struct
import subprocess
import uuid
from types import SimpleNamespace

from harness import CLIENT_KEY, UPSTREAM_KEY, base_conf
from test_operations import scrape, value
from test_pool import pool_conf


def wav(seconds=0.1, rate=8000):
    """A small valid WAV: silence, 16-bit mono."""
    samples = b"\x00\x00" * int(seconds * rate)
    return (b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" +
            struct.pack("<I", len(samples)) + samples)


def multipart(fields, files):
    """A multipart/form-data body as the SDKs send it: (content type, bytes)."""
    boundary = "----formdata-test-" + uuid.uuid4().hex
    out = b""
    for name, val in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{val}\r\n").encode()
    for name, (filename, data, ctype) in files.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: {ctype}\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", out


def upload(s, path, fields, files, key=CLIENT_KEY):
    ctype, body = multipart(fields, files)
    return s.request("POST", path, body, headers={"Content-Type": ctype}, key=key), body, ctype


# ---- multipart ---------------------------------------------------------------------

def test_audio_transcription_is_forwarded_byte_for_byte_and_routed_by_its_model(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, key_extra="rpm = 10"))
    audio = wav()
    r, body, ctype = upload(s, "/v1/audio/transcriptions", {"model": "whisper-1"},
                            {"file": ("hello.wav", audio, "audio/wav")})
    assert r.status == 200, r.body
    assert r.json()["text"] == f"mock transcription of {len(audio)} bytes by whisper-1"
    assert r.headers["x-ratelimit-remaining-requests"] == "9"  # counted in rpm
    last = mock.last()
    assert last["body_length"] == len(body)  # byte for byte, NULs included
    assert last["headers"]["content-type"] == ctype  # its boundary with it
    assert last["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    r, _, _ = upload(s, "/v1/audio/translations", {"model": "whisper-1", "response_format": "text"},
                     {"file": ("x.wav", audio, "audio/wav")})
    assert r.status == 200 and r.body.startswith(b"mock transcription")


def test_the_form_model_is_checked_against_the_key(mock, start_sluice):
    s = start_sluice(base_conf(mock.url))
    r, _, _ = upload(s, "/v1/audio/transcriptions", {"model": "whisper-1"},
                     {"file": ("x.wav", wav(), "audio/wav")}, key="sk-test-client-key-0002")
    assert r.status == 403 and r.error()["code"] == "model_not_allowed"  # team-b: gpt-4o-mini only
    m = scrape(s)
    assert value(m, "sluice_requests_total", key="team-b", model="other", served_model="-", backend="-", code="403") == 1
    assert mock.stats()["requests"] == 0


def test_a_form_that_gives_model_twice_is_refused(mock, start_sluice):
    """A whisper-1-only key posts model=whisper-1 then model=gpt-4o-transcribe:
    sluice would check the first, a Starlette-style parser (vLLM) read the
    second. 400, nothing forwarded (issue #28, finding 2)."""
    s = start_sluice(base_conf(mock.url, extra="[key whisper]\nkey = sk-test-whisper-only-1\n"
                                               "models = whisper-1\n"))
    boundary = "----formdata-twice"
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{m}\r\n".encode()
        for m in ("whisper-1", "gpt-4o-transcribe"))
    body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
             f"Content-Type: audio/wav\r\n\r\n").encode() + wav() + f"\r\n--{boundary}--\r\n".encode()
    r = s.request("POST", "/v1/audio/transcriptions", body,
                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                  key="sk-test-whisper-only-1")
    assert r.status == 400 and r.error()["param"] == "model", r.body
    assert "more than once" in r.error()["message"]
    assert mock.stats()["requests"] == 0
    r, _, _ = upload(s, "/v1/audio/transcriptions", {"model": "whisper-1"},
                     {"file": ("a.wav", wav(), "audio/wav")}, key="sk-test-whisper-only-1")
    assert r.status == 200  # once is fine
    # A file's purpose given twice: the stateful backend would keep one sluice never chose.
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{p}\r\n".encode()
        for p in ("batch", "fine-tune"))
    body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n"
             f"Content-Type: application/jsonl\r\n\r\n{{}}\r\n--{boundary}--\r\n").encode()
    r = s.request("POST", "/v1/files", body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status == 400 and r.error()["param"] == "purpose", r.body
    assert mock.stats()["requests"] == 1


def test_uploads_have_their_own_size_limit(mock, start_sluice):
    s = start_sluice(base_conf(mock.url, extra_server="max_body_size = 64k\nmax_upload_size = 1m"))
    big = b"\x01" * 600_000
    r, _, _ = upload(s, "/v1/audio/transcriptions", {"model": "whisper-1"},
                     {"file": ("big.wav", big, "audio/wav")})
    assert r.status == 200  # over max_body_size, within max_upload_size
    r, _, _ = upload(s, "/v1/audio/transcriptions", {"model": "whisper-1"},
                     {"file": ("bigger.wav", big * 2, "audio/wav")})
    assert r.status == 413
    r = s.chat({"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 100_000}]})
    assert r.status == 413  # a JSON body keeps max_body_size


def test_bodies_neither_json_nor_multipart_get_a_clear_error(mock, start_sluice):
    s = start_sluice(base_conf(mock.url))
    r = s.request("POST", "/v1/chat/completions", b"hello", headers={"Content-Type": "text/plain"})
    assert r.status == 415 and r.error()["code"] == "unsupported_media_type"
    assert "JSON" not in r.error()["message"] or "parse" not in r.error()["message"]
    r = s.request("POST", "/v1/audio/transcriptions", b"--nope\r\n",
                  headers={"Content-Type": "multipart/form-data; boundary=other"})
    assert r.status == 400 and "multipart" in r.error()["message"]
    r = s.request("POST", "/v1/audio/transcriptions", b"x", headers={"Content-Type": "multipart/form-data"})
    assert r.status == 400 and "boundary" in r.error()["message"]
    assert mock.stats()["requests"] == 0


# ---- the stateful backend -------------------------------------------------------------

def two_backends(a, b, stateful_b=True):
    return pool_conf([("a", a, "priority = 1"), ("b", b, "priority = 2\nstateful = yes" if stateful_b else "priority = 2")],
                     key="models = gpt-4o\nrpm = 100")


def test_stored_resources_and_model_less_calls_go_to_the_stateful_backend(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    s = start_sluice(two_backends(a, b))
    r, _, _ = upload(s, "/v1/files", {"purpose": "batch"},
                     {"file": ("in.jsonl", b'{"custom_id":"1"}\n', "application/jsonl")})
    assert r.status == 200 and r.json()["object"] == "file"
    file_id = r.json()["id"]
    assert s.request("GET", "/v1/files").json()["data"][0]["id"] == file_id
    assert s.request("GET", f"/v1/files/{file_id}").json()["filename"] == "in.jsonl"
    assert s.request("GET", f"/v1/files/{file_id}/content").body == b'{"custom_id":"1"}\n'
    # calls the mock answers with what arrived (and an id: echo-N)
    r = s.request("POST", "/v1/batches", json.dumps({"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                                      "completion_window": "24h"}).encode())
    assert r.status == 200 and r.json()["path"] == "/v1/batches"
    batch = r.json()["id"]  # the key's own from now on (test_resources.py)
    r = s.request("POST", "/v1/threads", b"{}")
    thread = r.json()["id"]
    for method, path, body in [("POST", f"/v1/batches/{batch}/cancel", None),
                               ("GET", "/v1/batches?limit=2", None),
                               ("GET", f"/v1/threads/{thread}", None),
                               ("DELETE", f"/v1/threads/{thread}", None),
                               ("GET", "/v1/chat/completions", None),
                               ("POST", "/v1/vector_stores", {"name": "docs"}),
                               ("POST", "/v1/moderations", {"input": "hello"}),
                               ("POST", "/v1/fine_tuning/jobs", {"model": "gpt-4o", "training_file": file_id})]:
        r = s.request(method, path, json.dumps(body).encode() if body is not None else None)
        assert r.status == 200, (method, path, r.body)
        assert r.json()["method"] == method and r.json()["path"] == path.split("?")[0], (method, path)
    assert s.request("DELETE", f"/v1/files/{file_id}").json()["deleted"] is True
    assert a.stats()["requests"] == 0  # not one of them on the first backend
    m = scrape(s)  # calls without a model are counted as model "-"
    assert value(m, "sluice_requests_total", key="k", model="-", served_model="-", backend="b", code="200") == 4 + 2 + 7 + 1
    assert "model=- backend=b status=200" in s.log_text()
    assert s.chat().status == 200  # a call with a model goes by the pool, as before
    assert a.stats()["requests"] == 1
    # Stored things never fail over: only b has them. Its 500 is the client's.
    r = s.request("POST", "/v1/fine_tuning/jobs", json.dumps({"model": "gpt-4o"}).encode(),
                  headers={"x-mock-status": "500"})
    assert r.status == 500
    assert a.stats()["requests"] == 1


def test_without_a_stateful_backend_the_first_by_priority_is_it(start_mock, start_sluice):
    a, b = start_mock(), start_mock()
    s = start_sluice(two_backends(a, b, stateful_b=False).replace("priority = 1", "priority = 3"))
    assert s.request("GET", "/v1/batches").status == 200
    assert [a.stats()["requests"], b.stats()["requests"]] == [0, 1]  # b has priority 2 < 3


def test_one_stateful_backend_at_most(start_mock, tmp):
    from harness import SLUICE
    a, b = start_mock(), start_mock()
    conf = tmp / "two.conf"
    conf.write_text(two_backends(a, b).replace("priority = 1", "priority = 1\nstateful = yes")
                    .replace("{port}", "9"))
    r = subprocess.run([str(SLUICE), "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1 and "one at most" in r.stdout + r.stderr


def test_azure_stateful_calls_use_the_account_path(start_mock, start_sluice):
    m = start_mock()
    s = start_sluice(f"""
[server]
listen = 127.0.0.1:{{port}}
[backend az]
type = azure
url = http://127.0.0.1:{m.port}
api_key = {UPSTREAM_KEY}
api_version = 2024-10-21
[key k]
key = {CLIENT_KEY}
""")
    assert s.request("GET", "/v1/batches?limit=1").status == 200
    assert m.last()["target"] == "/openai/batches?api-version=2024-10-21&limit=1"
    assert m.last()["headers"]["api-key"] == UPSTREAM_KEY


# ---- GET /v1/models --------------------------------------------------------------------

def models_conf(a, b, key_models="*"):
    return pool_conf([("a", a, "models = *\nmodels_cache = 1s"), ("b", b, "models = *"),
                      ("named", b, "models = o3, gpt-4o")], key=f"models = {key_models}")


def ids(r):
    assert r.status == 200, r.body
    return [m["id"] for m in r.json()["data"]]


def test_models_lists_what_the_upstreams_of_star_backends_list(start_mock, start_sluice):
    a = start_mock(models=["gpt-4o", "gpt-4o-mini", "whisper-1"])
    b = start_mock(models=["gpt-4o", "llama-3-70b"])
    s = start_sluice(models_conf(a, b))
    got = ids(s.request("GET", "/v1/models"))
    assert sorted(got) == ["gpt-4o", "gpt-4o-mini", "llama-3-70b", "o3", "whisper-1"]  # merged, once each
    assert s.request("GET", "/v1/models/llama-3-70b").json()["id"] == "llama-3-70b"  # agrees with the list
    assert s.request("GET", "/v1/models/not-listed").status == 404
    assert a.last()["target"] == "/v1/models"
    assert a.last()["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    fetched = a.stats()["requests"]
    ids(s.request("GET", "/v1/models"))
    assert a.stats()["requests"] == fetched  # kept for models_cache


def test_a_long_upstream_model_list_is_merged_once_each_in_order(start_mock, start_sluice):
    # Two upstreams of 12,000 ids each, half shared: the merged list has each
    # id once, in order of first appearance (sluice indexes the names by hash;
    # it used to compare every new name with every kept one).
    a_ids = [f"m{i:05d}" for i in range(12000)]
    b_ids = [f"m{i:05d}" for i in range(6000, 18000)]
    s = start_sluice(models_conf(start_mock(models=a_ids), start_mock(models=b_ids)))
    got = ids(s.request("GET", "/v1/models"))
    assert sorted(got[:2]) == ["gpt-4o", "o3"]  # the named backend's first
    assert got[2:] == [f"m{i:05d}" for i in range(18000)]
    assert s.request("GET", "/v1/models/m17999").json()["id"] == "m17999"
    assert s.request("GET", "/v1/models/m18000").status == 404


def test_models_list_is_filtered_by_the_key_and_refreshed(start_mock, start_sluice):
    a = start_mock(models=["gpt-4o", "gpt-4o-mini"])
    b = start_mock(models=["llama-3-70b"])
    s = start_sluice(models_conf(a, b, key_models="gpt-4o-mini, llama-3-70b"))
    assert sorted(ids(s.request("GET", "/v1/models"))) == ["gpt-4o-mini", "llama-3-70b"]
    assert s.request("GET", "/v1/models/gpt-4o").status == 404  # not this key's
    before = a.stats()["requests"]
    import time
    time.sleep(1.1)  # a's models_cache = 1s
    ids(s.request("GET", "/v1/models"))
    assert a.stats()["requests"] == before + 1


def test_models_list_survives_an_upstream_that_cannot_answer(start_mock, start_sluice):
    from harness import free_port
    a = start_mock(models=["gpt-4o-mini"])
    b = start_mock(models=["llama-3-70b"])
    dead = SimpleNamespace(url=f"http://127.0.0.1:{free_port()}/v1")
    s = start_sluice(pool_conf([("a", a, "models = *\nmodels_cache = 1s"), ("b", dead, "models = *"),
                                ("named", b, "models = o3, gpt-4o")]))
    got = ids(s.request("GET", "/v1/models"))
    assert sorted(got) == ["gpt-4o", "gpt-4o-mini", "o3"]  # what could be had
    assert "model list could not be fetched" in s.log_text()
