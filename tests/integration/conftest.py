"""pytest fixtures over the harness (harness.py): each starts what a test
asks for and stops it when the test ends, however it ends; a sluice must
then have exited 0 with a clean sanitizer log."""
import pytest

from harness import BUILD, Mock, Redis, Sluice, base_conf, sanitizer_errors


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Test folders go under the build, not /tmp: a run leaves nothing in /tmp,
    and what a failed test wrote stays for a look until the next run."""
    if not config.option.basetemp:
        config.option.basetemp = str(BUILD / "pytest-tmp")


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


@pytest.fixture
def start_mock(tmp):
    """Starts mock upstreams on demand; all are stopped when the test ends."""
    started = []

    def start(**kw):
        m = Mock(tmp, **kw)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


@pytest.fixture
def mock(start_mock):
    return start_mock()


@pytest.fixture
def start_sluice(tmp):
    started = []

    def start(conf, **kw):
        s = Sluice(tmp, conf, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        rc = s.stop()
        text = s.log_text()
        errors = sanitizer_errors(text)
        assert not errors, "sanitizer reported:\n" + text[-4000:]
        assert rc == 0, f"sluice exited with {rc}:\n" + text[-2000:]


@pytest.fixture
def redis(tmp):
    r = Redis(tmp)
    yield r
    r.stop()


@pytest.fixture
def sluice(mock, start_sluice):
    return start_sluice(base_conf(mock.url))


@pytest.fixture(scope="session")
def _cluster(tmp_path_factory):
    from redis_topo import Cluster
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


@pytest.fixture
def cluster(_cluster):
    """A 3-master Redis Cluster (one per test session), emptied for each test."""
    for port in _cluster.masters():
        _cluster.node(port).cli("FLUSHALL")
    return _cluster


@pytest.fixture(params=["redis", "cluster"])
def shared_redis(request):
    """The same test against one Redis and against a 3-master Redis Cluster."""
    return request.getfixturevalue(request.param)
