"""Stored resources belong to the key that created them through sluice, or to
its team with share_resources (issue #28, finding 3): another key gets 404
`not_found` for them with any method — in the path or as a reference in the
body — and lists show only the caller's own. The records live where the
limits live: in the process, or in Redis, shared by every node."""
import json

import pytest

from harness import CLIENT_KEY, MOCK_HEADERS, OTHER_KEY, UPSTREAM_KEY
from test_api_paths import upload
from test_budgets import THIRD_KEY

FOURTH_KEY = "sk-fourth-client-key-04"


def conf(mock, redis=None, share="no"):
    """a and c in team t (share_resources = share), b alone, d in team u (not sharing)."""
    return f"""
[server]
listen = 127.0.0.1:{{port}}
[backend main]
url = {mock.url}
api_key = {UPSTREAM_KEY}
{MOCK_HEADERS}
[team t]
share_resources = {share}
[team u]
[key a]
key = {CLIENT_KEY}
team = t
[key b]
key = {OTHER_KEY}
[key c]
key = {THIRD_KEY}
team = t
[key d]
key = {FOURTH_KEY}
team = u
""" + (f"[redis]\nurl = {redis.url}\n" if redis else "")


def make_file(s, key=CLIENT_KEY):
    r, _, _ = upload(s, "/v1/files", {"purpose": "batch"},
                     {"file": ("in.jsonl", b'{"custom_id":"1"}\n', "application/jsonl")}, key=key)
    assert r.status == 200, r.body
    return r.json()["id"]


def listed(s, key):
    r = s.request("GET", "/v1/files", key=key)
    assert r.status == 200, r.body
    return [f["id"] for f in r.json()["data"]]


@pytest.mark.parametrize("use_redis", [False, True])
def test_a_file_is_its_uploaders_alone(mock, start_sluice, use_redis, request):
    redis = request.getfixturevalue("redis") if use_redis else None
    s = start_sluice(conf(mock, redis))
    mine = make_file(s)
    theirs = make_file(s, key=OTHER_KEY)
    before = mock.stats()["requests"]
    for method, path in [("GET", f"/v1/files/{mine}"), ("GET", f"/v1/files/{mine}/content"),
                         ("DELETE", f"/v1/files/{mine}")]:
        r = s.request(method, path, key=OTHER_KEY)
        assert r.status == 404 and r.error()["code"] == "not_found", (method, r.body)
        assert mine in r.error()["message"]
    assert mock.stats()["requests"] == before  # none of it went upstream
    assert s.request("GET", f"/v1/files/{mine}").json()["id"] == mine
    assert s.request("GET", f"/v1/files/{mine}/content").body == b'{"custom_id":"1"}\n'
    # A list shows the caller's own only, though the upstream account holds both.
    assert listed(s, CLIENT_KEY) == [mine] and listed(s, OTHER_KEY) == [theirs]
    assert listed(s, THIRD_KEY) == []  # same team, not shared
    # An id never made through sluice is nobody's.
    assert s.request("GET", "/v1/files/file-made-elsewhere").status == 404
    # Deleted by its owner: the record goes with it.
    assert s.request("DELETE", f"/v1/files/{mine}").json()["deleted"] is True
    assert s.request("GET", f"/v1/files/{mine}").status == 404
    assert s.request("GET", f"/v1/files/{theirs}", key=OTHER_KEY).status == 200


def test_a_team_with_share_resources_shares_them(mock, start_sluice):
    s = start_sluice(conf(mock, share="yes"))
    shared = make_file(s)  # key a, team t
    assert s.request("GET", f"/v1/files/{shared}", key=THIRD_KEY).status == 200  # key c, team t
    assert s.request("GET", f"/v1/files/{shared}", key=FOURTH_KEY).status == 404  # team u
    assert s.request("GET", f"/v1/files/{shared}", key=OTHER_KEY).status == 404  # no team
    assert listed(s, THIRD_KEY) == [shared]
    assert s.request("DELETE", f"/v1/files/{shared}", key=THIRD_KEY).status == 200


def test_references_in_the_body_must_be_the_callers(mock, start_sluice):
    """A batch over someone else's file, or a response continuing someone
    else's: 404 as for the path, nothing forwarded."""
    s = start_sluice(conf(mock))
    mine = make_file(s)
    before = mock.stats()["requests"]
    r = s.request("POST", "/v1/batches", {"input_file_id": mine, "endpoint": "/v1/chat/completions",
                                           "completion_window": "24h"}, key=OTHER_KEY)
    assert r.status == 404 and mine in r.error()["message"]
    assert mock.stats()["requests"] == before
    r = s.request("POST", "/v1/batches", {"input_file_id": mine, "endpoint": "/v1/chat/completions",
                                           "completion_window": "24h"})
    assert r.status == 200
    # A stored response (store defaults to true) is its creator's.
    r = s.request("POST", "/v1/responses", {"model": "gpt-4o", "input": "hi"})
    resp = r.json()["id"]
    assert s.request("GET", f"/v1/responses/{resp}").status == 200
    assert s.request("GET", f"/v1/responses/{resp}", key=OTHER_KEY).status == 404
    r = s.request("POST", "/v1/responses", {"model": "gpt-4o", "input": "more", "previous_response_id": resp},
                  key=OTHER_KEY)
    assert r.status == 404 and r.error()["code"] == "not_found"
    r = s.request("POST", "/v1/responses", {"model": "gpt-4o", "input": "more", "previous_response_id": resp})
    assert r.status == 200


def test_a_streamed_stored_response_is_its_creators(mock, start_sluice):
    s = start_sluice(conf(mock))
    c = s.conn()
    c.request("POST", "/v1/responses", body=json.dumps({"model": "gpt-4o", "input": "hi", "stream": True}),
              headers={"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"})
    text = c.getresponse().read().decode()
    c.close()
    assert "response.created" in text
    assert s.request("GET", "/v1/responses/resp_mock").status == 200
    assert s.request("GET", "/v1/responses/resp_mock", key=OTHER_KEY).status == 404


def test_records_are_shared_by_every_node_and_refuse_when_redis_is_down(mock, redis, start_sluice):
    one, two = start_sluice(conf(mock, redis)), start_sluice(conf(mock, redis))
    mine = make_file(one)
    assert two.request("GET", f"/v1/files/{mine}").status == 200
    assert two.request("GET", f"/v1/files/{mine}", key=OTHER_KEY).status == 404
    assert listed(two, CLIENT_KEY) == [mine] and listed(two, OTHER_KEY) == []
    redis.stop()
    r = two.request("GET", f"/v1/files/{mine}")
    assert r.status == 503 and r.error()["code"] == "rate_limiter_unavailable"  # never guessed
    assert two.chat().status == 200  # calls about no stored resource go on
