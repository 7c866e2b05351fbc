"""The boundary: nothing a client sends reaches past /v1 of a backend, nothing
an upstream says leaks back, no anonymous client holds memory. The paths
are checked against a real nginx upstream that logs the URI it resolved."""
import json
import os
import signal
import subprocess
import time

from conftest import CLIENT_KEY, UPSTREAM_KEY, free_port, wait_port

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = '{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}'


class Nginx:
    """nginx on a free port answering every request with a chat completion and
    logging the URI it resolved ($uri: decoded, dot segments removed)."""

    def __init__(self, tmp):
        self.port = free_port()
        self.dir = tmp / f"nginx-{self.port}"
        for d in ("", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / d).mkdir(exist_ok=True)
        self.log = self.dir / "uri.log"
        conf = self.dir / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
  log_format uri '$uri';
  access_log {self.log} uri;
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fastcgi;
  uwsgi_temp_path {self.dir}/uwsgi;
  scgi_temp_path {self.dir}/scgi;
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      default_type application/json;
      return 200 '{ANSWER}';
    }}
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-p", str(self.dir), "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)

    def uris(self):
        time.sleep(0.1)  # nginx writes the line after the response
        return self.log.read_text().split() if self.log.exists() else []

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def nginx_conf(nginx, backend_extra="", base="/base/v1"):
    return f"""
[server]
listen = 127.0.0.1:{{port}}

[backend behind-nginx]
url = http://127.0.0.1:{nginx.port}{base}
api_key = {UPSTREAM_KEY}
{backend_extra}

[key k]
key = {CLIENT_KEY}
"""


def raw_post(s, target, body=CHAT):
    data = json.dumps(body).encode()
    head = (f"POST {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n")
    out = s.raw(head.encode() + data)
    return int(out.split(b" ", 2)[1]), out


CLIMBING_PATHS = [
    "/v1/..%2fadmin/x", "/v1/%2e%2e%2fadmin/x", "/v1/%2E%2E%2Fadmin/x", "/v1/chat/..%2F..%2Fadmin",
    "/v1/%252e%252e%252fadmin/x", "/v1/%5c..%5cadmin", "/v1/..%5Cadmin", "/v1/chat;/../../admin",
    "/v1/chat%3b/..%2f..%2fadmin", "/v1/.%2e/admin", "/v1//admin", "/v1/./chat/completions",
    "/v1/chat/completions/", "/v1/chat/%00completions", "/v1/chat%2fcompletions%3f", "/v1/%",
    "/v1/%zz", "/v1/chat/completions%23x", "/v1/a%20b",
]


def test_paths_that_climb_out_are_refused_before_any_upstream_contact(tmp, start_sluice):
    nginx = Nginx(tmp)
    try:
        s = start_sluice(nginx_conf(nginx))
        for target in CLIMBING_PATHS:
            status, out = raw_post(s, target)
            assert status == 400, (target, out[:300])
            if b"{" in out:
                assert json.loads(out[out.index(b"{"):])["error"]["type"] == "invalid_request_error"
        assert nginx.uris() == []  # not one reached the upstream
        assert raw_post(s, "/v1/chat/completions")[0] == 200
        assert raw_post(s, "/v1/chat%2Fcompletions")[0] == 200  # decoded, it is plain
        assert nginx.uris() == ["/base/v1/chat/completions"] * 2
    finally:
        nginx.stop()


def test_model_names_never_climb_out_of_an_azure_url(tmp, start_sluice):
    nginx = Nginx(tmp)
    try:
        s = start_sluice(nginx_conf(nginx, "type = azure\napi_version = 2024-06-01", base="/base"))
        for model in ["..", ".", "../../admin", "a/b", "gpt-4o%2f..", "x?y", "x#y", "a b", "tab\there",
                      "ctl\u0001", "..%2f", "%2e%2e"]:
            r = s.chat({"model": model, "messages": [{"role": "user", "content": "hi"}]})
            assert r.status == 400, model
            assert r.error()["param"] == "model"
        assert nginx.uris() == []
        assert s.chat(dict(CHAT, model="gpt-4o-2024-08-06")).status == 200
        assert s.chat(dict(CHAT, model="ft:gpt-4o:acme:x:1")).status == 200
        assert nginx.uris() == ["/base/openai/deployments/gpt-4o-2024-08-06/chat/completions",
                                "/base/openai/deployments/ft:gpt-4o:acme:x:1/chat/completions"]
    finally:
        nginx.stop()


def test_model_names_with_slashes_are_fine_where_they_stay_in_the_body(mock, start_sluice):
    from conftest import base_conf
    s = start_sluice(base_conf(mock.url))
    assert s.chat(dict(CHAT, model="meta-llama/Llama-3-8B")).status == 200
    assert mock.last()["body"].count("meta-llama/Llama-3-8B") == 1
