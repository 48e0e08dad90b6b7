"""The hook, the deferred poller and the connection test reach the simulator over HTTPS through a real proxy.

The proxy is ``proxy.py`` (PyPI package ``proxy.py``), started by the tests on 127.0.0.1 with basic auth and
a debug log; the simulator serves TLS with a self-signed certificate given as the connection's ``ca_bundle``,
so TLS is verified end to end through the proxy's CONNECT tunnel. Also here: the proxy's refusals (407,
a refused connection, a proxy that never answers), and the rule for environment proxies against the same
real proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_oes.exceptions import OESAuthenticationError, OESConnectionError, OESError
from airflow_provider_oes.hooks.oes import OESHook
from airflow_provider_oes.sensors.allocation import AllocationStatusSensor
from airflow_provider_oes.testing.simulator import OESSimulator
from airflow_provider_oes.triggers.allocation import AllocationStatusTrigger
from tests.reliability._support import ENTERPRISE_ID, TOKEN, assert_no_token, self_signed_cert

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.integration

PROXY_USER = "egress-user"
PROXY_PASSWORD = "pr0xy-Pa55word-7d1c"
"""The proxy's credentials: a secret like the token, never to be shown."""
# Generous timeouts: proxy.py is a Python process on a shared 2-core machine.
TIMEOUTS: dict[str, Any] = {"connect_timeout": 10.0, "read_timeout": 10.0}


class ForwardProxy:
    """``proxy.py`` run as ``python -m proxy`` on a free 127.0.0.1 port, logging at DEBUG level to a file.

    :param folder: Where its port file and log go.
    :param basic_auth: ``user:password`` the proxy requires, or ``None`` for an open proxy.
    :param blocked_hosts: Upstream hosts the proxy refuses (HTTP 418) before any DNS lookup or connection.
    :param tls: (certificate, key) to serve the proxy itself over TLS: an ``https://`` proxy.
    """

    def __init__(
        self,
        folder: Path,
        basic_auth: str | None = None,
        blocked_hosts: str | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.log_path = folder / "proxy.log"
        self.out_path = folder / "proxy.out"
        port_file = folder / "proxy.port"
        command = [
            sys.executable,
            "-m",
            "proxy",
            "--hostname",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--num-workers",
            "1",
            "--num-acceptors",
            "1",
            "--log-level",
            "DEBUG",
            "--log-file",
            str(self.log_path),
        ]
        if basic_auth:
            command += ["--basic-auth", basic_auth]
        if blocked_hosts:
            command += [
                "--plugins",
                "proxy.plugin.FilterByUpstreamHostPlugin",
                "--filtered-upstream-hosts",
                blocked_hosts,
            ]
        if tls:
            command += ["--cert-file", tls[0], "--key-file", tls[1]]
        with self.out_path.open("wb") as out:
            # Its own session: proxy.py forks worker processes, ended with it by process group in stop().
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        self.port = 0
        while not self.port:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"proxy.py did not start: {self.out_path.read_text()[-2000:]}")
            text = port_file.read_text().strip() if port_file.exists() else ""
            if text.isdigit():
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", int(text)), timeout=1):
                    self.port = int(text)
            time.sleep(0.05)

    def url(self, credentials: str | None = None) -> str:
        """The proxy's URL, with ``user:password@`` when ``credentials`` are given."""
        return f"{self.scheme}://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    def log(self) -> str:
        """Everything the proxy logged so far (its log file and its stdout/stderr)."""
        texts = [p.read_text(errors="replace") for p in (self.log_path, self.out_path) if p.exists()]
        return "\n".join(texts)

    def connects(self, target: str) -> int:
        """How many tunnels to ``target`` (``host:port``) the proxy's access log shows (proxy.py writes
        that line when the tunnel closes)."""
        return len(re.findall(rf" - CONNECT {re.escape(target)} - ", self.log()))

    def wait_for_connects(self, target: str, count: int, timeout: float = 30) -> int:
        """Wait until the access log shows ``count`` tunnels to ``target`` (or ``timeout`` passed); return
        how many it shows."""
        deadline = time.monotonic() + timeout
        while self.connects(target) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.connects(target)

    def wait_for_log(self, text: str, count: int, timeout: float = 30) -> int:
        """Wait until ``text`` occurs ``count`` times in the log (or ``timeout`` passed); return how often."""
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.log().count(text)

    def stop(self) -> None:
        """Stop the proxy and its worker processes (its own process group)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # workers left behind, if any


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (the certificate is the ``ca_bundle``)."""
    return self_signed_cert(tmp_path_factory.mktemp("proxy-tls"))


@pytest.fixture(scope="module")
def https_sim_module(tls_files: tuple[str, str]) -> Iterator[OESSimulator]:
    cert, key = tls_files
    with OESSimulator(port=0, token=TOKEN, enterprise_id=ENTERPRISE_ID, ssl_certfile=cert, ssl_keyfile=key) as sim:
        yield sim


@pytest.fixture
def https_sim(https_sim_module: OESSimulator) -> Iterator[OESSimulator]:
    """The simulator over HTTPS on 127.0.0.1, reset before and after the test."""
    https_sim_module.reset()
    yield https_sim_module
    https_sim_module.reset()


@pytest.fixture(scope="module")
def auth_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    """proxy.py requiring :data:`PROXY_USER` / :data:`PROXY_PASSWORD`; it refuses oes.example.test."""
    proxy = ForwardProxy(
        tmp_path_factory.mktemp("proxy"), f"{PROXY_USER}:{PROXY_PASSWORD}", blocked_hosts="oes.example.test"
    )
    yield proxy
    proxy.stop()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variables from the machine running the tests."""
    for name in list(os.environ):
        if name.lower() in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}:
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def via_proxy(
    https_sim: OESSimulator,
    auth_proxy: ForwardProxy,
    tls_files: tuple[str, str],
    set_conn: Callable[..., str],
    clean_env: pytest.MonkeyPatch,
) -> Callable[..., str]:
    """Return a function that points ``oes_default`` at the HTTPS simulator through the proxy; its
    ``credentials`` argument goes into the proxy URL (default: the right ones)."""

    def _set(credentials: str | None = f"{PROXY_USER}:{PROXY_PASSWORD}", **extras: Any) -> str:
        extras = {**TIMEOUTS, "ca_bundle": tls_files[0], "proxy_url": auth_proxy.url(credentials), **extras}
        return set_conn(https_sim.url, **extras)

    return _set


def _sim_target(sim: OESSimulator) -> str:
    return f"127.0.0.1:{sim.port}"


def _assert_secrets_absent(*items: Any) -> None:
    """Neither the access token nor the proxy password shows up in ``items``."""
    assert_no_token(*items)
    assert_no_token(*items, token=PROXY_PASSWORD)


async def _first_event(allocation_id: str) -> dict[str, Any]:
    """The trigger's first event; then the trigger is closed, as the triggerer does once it fired."""
    events = AllocationStatusTrigger(allocation_id, ENTERPRISE_ID, poll_interval=0.05).run()
    try:
        event = await asyncio.wait_for(anext(events), 60)
    finally:
        await events.aclose()
    payload: dict[str, Any] = event.payload
    return payload


# ----------------------------------------------------------------------------- through the proxy
def test_sync_hook_reaches_the_https_simulator_through_the_proxy(
    https_sim: OESSimulator, auth_proxy: ForwardProxy, via_proxy: Callable[..., str], capfd: pytest.CaptureFixture[str]
) -> None:
    """Credentials required and accepted; the proxy's log shows the CONNECT, never the token (it only
    relays the TLS tunnel); the sensor's poke goes the same way."""
    aid = https_sim.add_allocation(final_status="cleared")
    via_proxy()
    before = auth_proxy.connects(_sim_target(https_sim))
    hook = OESHook()
    allocation = hook.get_allocation(aid)
    assert allocation.id == aid
    assert hook.session.trust_env is False
    hook.close()  # ends the tunnel: proxy.py logs a CONNECT when it closes
    assert auth_proxy.wait_for_connects(_sim_target(https_sim), before + 1) == before + 1
    sensor = AllocationStatusSensor(task_id="s", allocation_id=aid)
    assert sensor.poke({})
    sensor.hook.close()
    assert auth_proxy.wait_for_connects(_sim_target(https_sim), before + 2) == before + 2
    assert [path.endswith(aid) for _, path, _, _ in https_sim.requests] == [True, True]
    log = auth_proxy.log()
    assert TOKEN not in log
    assert "Bearer" not in log  # no request header of the API reached the proxy
    _assert_secrets_absent(repr(hook.settings), repr(hook.settings.proxy), capfd.readouterr().out)


async def test_deferred_poller_reaches_the_https_simulator_through_the_proxy(
    https_sim: OESSimulator, auth_proxy: ForwardProxy, via_proxy: Callable[..., str]
) -> None:
    """AllocationStatusTrigger, through the shared poller and its pooled httpx client, gets its answers
    through the proxy's tunnel (batched list request and the single GET alike)."""
    target = _sim_target(https_sim)
    for batching in (True, False):
        aid = https_sim.add_allocation(final_status="cleared")
        via_proxy(batching=batching)
        before = auth_proxy.connects(target)
        event = await _first_event(aid)
        assert event["status"] == "terminal", event
        assert event["allocation"]["id"] == aid
        # The poller closes its pooled client when its last trigger leaves; then the tunnel is logged.
        # (waited for in a thread: the event loop must stay free to run the poller's shutdown)
        assert await asyncio.to_thread(auth_proxy.wait_for_connects, target, before + 1) == before + 1, batching
    assert TOKEN not in auth_proxy.log()


def test_connection_test_goes_through_the_proxy(
    https_sim: OESSimulator, auth_proxy: ForwardProxy, via_proxy: Callable[..., str]
) -> None:
    via_proxy()
    before = auth_proxy.connects(_sim_target(https_sim))
    hook = OESHook()
    ok, message = hook.test_connection()
    assert ok, message
    hook.close()
    assert auth_proxy.wait_for_connects(_sim_target(https_sim), before + 1) == before + 1
    _assert_secrets_absent(message)


def test_tls_is_verified_end_to_end_through_the_tunnel(https_sim: OESSimulator, via_proxy: Callable[..., str]) -> None:
    """Without the ca_bundle the simulator's self-signed certificate is refused through the proxy too: the
    proxy only relays bytes, the client checks the API's certificate."""
    via_proxy(ca_bundle=None, max_retries=3)
    with pytest.raises(OESError, match="could not be verified") as info:
        OESHook().get_allocation(https_sim.add_allocation())
    assert not info.value.transient
    assert https_sim.request_count == 0


# ----------------------------------------------------------------------------- the proxy refuses
@pytest.mark.parametrize("credentials", [f"{PROXY_USER}:wrong-{PROXY_PASSWORD}", None], ids=["wrong", "missing"])
async def test_407_is_a_permanent_error_naming_the_proxy_for_hook_and_trigger(
    credentials: str | None,
    https_sim: OESSimulator,
    auth_proxy: ForwardProxy,
    via_proxy: Callable[..., str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Wrong or missing proxy credentials: 407, permanent like a 401 (one attempt, no retries), the message
    names the proxy without its credentials; the API never sees a request."""
    via_proxy(credentials, max_retries=3)
    aid = https_sim.add_allocation()
    refused = "ProxyAuthenticationFailed"  # proxy.py's log line for each 407 it answers
    before = auth_proxy.log().count(refused)
    with pytest.raises(OESAuthenticationError) as info:
        OESHook().get_allocation(aid)
    error = info.value
    assert error.status_code == 407
    assert not error.transient
    shown = f"http://{'***@' if credentials else ''}127.0.0.1:{auth_proxy.port}"
    assert shown in str(error)
    assert "connection extra 'proxy_url'" in str(error)
    assert await asyncio.to_thread(auth_proxy.wait_for_log, refused, before + 1) >= before + 1

    event = await _first_event(aid)
    assert event["status"] == "error"
    assert event["error_type"] == "OESAuthenticationError"
    assert event["status_code"] == 407
    assert shown in event["message"]
    ok, message = OESHook().test_connection()
    assert not ok
    assert "407" in message
    # One tunnel request each for the hook, the trigger and the connection test, although max_retries is 3:
    # a 407 is not retried. (The proxy has one worker: once the last line is logged, the earlier ones are.)
    assert await asyncio.to_thread(auth_proxy.wait_for_log, refused, before + 3) == before + 3
    assert https_sim.request_count == 0
    _assert_secrets_absent(error, event, message, capfd.readouterr().out)


def test_a_refused_proxy_is_a_transient_error_naming_it(
    https_sim: OESSimulator, via_proxy: Callable[..., str], set_conn: Callable[..., str], tls_files: tuple[str, str]
) -> None:
    """Nothing listens at the proxy's address: a transient OESConnectionError naming the proxy (retried;
    a sensor keeps waiting), the password not shown."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    proxy = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{closed_port}"
    set_conn(https_sim.url, proxy_url=proxy, ca_bundle=tls_files[0], **TIMEOUTS)
    with pytest.raises(OESConnectionError) as info:
        OESHook().get_allocation(https_sim.add_allocation())
    assert info.value.transient
    assert f"through proxy http://***@127.0.0.1:{closed_port}" in str(info.value)
    _assert_secrets_absent(info.value)


async def test_a_proxy_that_never_answers_times_out_as_a_transient_error_naming_it(
    https_sim: OESSimulator, set_conn: Callable[..., str], tls_files: tuple[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    """A proxy that accepts the connection and never answers CONNECT: the connect timeout applies, and the
    error (sync and async) is a transient OESConnectionError naming the proxy."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # accepts (in the kernel's backlog) and never says a word
        port = silent.getsockname()[1]
        set_conn(
            https_sim.url,
            proxy_url=f"http://127.0.0.1:{port}",
            ca_bundle=tls_files[0],
            connect_timeout=0.5,
            read_timeout=0.5,
            max_retries=0,
            batching=False,
        )
        started = time.monotonic()
        with pytest.raises(OESConnectionError, match=rf"through proxy http://127\.0\.0\.1:{port}") as info:
            OESHook().get_allocation(https_sim.add_allocation())
        assert info.value.transient
        assert "timed out" in str(info.value)
        assert time.monotonic() - started < 30  # bounded by the timeouts, not hanging

        aid = https_sim.add_allocation()
        client_error = await _async_client_error(aid)
        assert isinstance(client_error, OESConnectionError)
        assert client_error.transient
        assert f"through proxy http://127.0.0.1:{port}" in str(client_error)
    assert https_sim.request_count == 0


async def _async_client_error(aid: str) -> OESError:
    """The error the poller's async client raises for one GET with connection ``oes_default``."""
    from airflow.sdk import BaseHook

    from airflow_provider_oes._settings import OESConnectionSettings
    from airflow_provider_oes.hooks.async_client import OESAsyncClient

    settings = OESConnectionSettings.from_connection(await BaseHook.aget_connection("oes_default"))
    client = OESAsyncClient(settings)
    try:
        with pytest.raises(OESError) as info:
            await client.get_allocation(aid, ENTERPRISE_ID)
    finally:
        await client.aclose()
    return info.value


# ----------------------------------------------------------------------------- environment proxies
async def test_environment_proxy_never_carries_loopback_traffic(
    https_sim: OESSimulator,
    auth_proxy: ForwardProxy,
    set_conn: Callable[..., str],
    tls_files: tuple[str, str],
    clean_env: pytest.MonkeyPatch,
) -> None:
    """With HTTPS_PROXY / ALL_PROXY set (here: a proxy that would refuse us, wrong password), the local
    simulator is still reached directly by the hook and by the trigger; the proxy sees nothing of it."""
    wrong = auth_proxy.url(f"{PROXY_USER}:wrong")
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        clean_env.setenv(name, wrong)
    set_conn(https_sim.url, ca_bundle=tls_files[0], **TIMEOUTS)
    before = auth_proxy.log().count(" - CONNECT ")
    aid = https_sim.add_allocation(final_status="cleared")
    assert OESHook().get_allocation(aid).id == aid
    event = await _first_event(aid)
    assert event["status"] == "terminal", event
    assert https_sim.request_count >= 2
    assert auth_proxy.log().count(" - CONNECT ") == before


async def test_environment_proxy_carries_other_hosts_unless_no_proxy_or_switched_off(
    auth_proxy: ForwardProxy, set_conn: Callable[..., str], clean_env: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY is honoured for a non-loopback API by both clients alike: the real proxy logs the CONNECT
    to oes.example.test and refuses it (HTTP 418: that host is blocked before any DNS lookup). NO_PROXY and
    trust_env=false make both clients go direct (checked on the configured clients: a direct request to
    that host would leave this machine)."""
    import httpx

    host = "oes.example.test"
    clean_env.setenv("HTTPS_PROXY", auth_proxy.url(f"{PROXY_USER}:{PROXY_PASSWORD}"))
    set_conn(f"https://{host}", max_retries=0, batching=False, **TIMEOUTS)
    refused = 'HttpRequestRejected b"I\'m a tea pot"'  # proxy.py's log line for a blocked upstream host
    before = auth_proxy.log().count(refused)
    with pytest.raises(OESError, match="answered HTTP 418") as info:
        OESHook().get_allocation("a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab")
    assert "environment variable HTTPS_PROXY" in str(info.value)
    assert f"http://***@127.0.0.1:{auth_proxy.port}" in str(info.value)
    assert not info.value.transient  # a 4xx from the proxy is permanent, as from the API
    error = await _async_client_error("a3c1f6e2-9b0d-4c2e-8f1a-0123456789ab")
    assert "answered HTTP 418" in str(error)
    assert "environment variable HTTPS_PROXY" in str(error)
    # the CONNECTs to oes.example.test, one per client
    assert await asyncio.to_thread(auth_proxy.wait_for_log, refused, before + 2) == before + 2
    _assert_secrets_absent(info.value, error)

    from airflow.sdk import BaseHook

    from airflow_provider_oes._settings import OESConnectionSettings
    from airflow_provider_oes.hooks.async_client import OESAsyncClient

    url = httpx.URL(f"https://{host}/api/v2/x")
    for env, extras in (({"NO_PROXY": "localhost,.example.test"}, {}), ({}, {"trust_env": False})):
        for name, value in env.items():
            clean_env.setenv(name, value)
        set_conn(f"https://{host}", **extras)
        hook = OESHook()
        assert hook.settings.proxy is None
        assert hook.session.proxies == {}
        assert hook.session.trust_env is False
        client = OESAsyncClient(OESConnectionSettings.from_connection(await BaseHook.aget_connection("oes_default")))
        try:
            assert client._http._transport_for_url(url) is client._http._transport  # no proxy mount
        finally:
            await client.aclose()
        for name in env:
            clean_env.delenv(name)


# ----------------------------------------------------------------------------- an https:// proxy
@pytest.fixture(scope="module")
def tls_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    """proxy.py serving TLS itself (an ``https://`` proxy) with its own self-signed certificate."""
    folder = tmp_path_factory.mktemp("tls-proxy")
    proxy = ForwardProxy(folder, f"{PROXY_USER}:{PROXY_PASSWORD}", tls=self_signed_cert(folder))
    yield proxy
    proxy.stop()


async def test_an_https_proxy_is_verified_with_the_same_trust_by_both_clients(
    https_sim: OESSimulator,
    tls_proxy: ForwardProxy,
    tls_files: tuple[str, str],
    set_conn: Callable[..., str],
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """TLS to the proxy, and TLS to the API inside it: with a ca_bundle holding both CAs, the hook and the
    deferred poller get through; with only the API's CA, the proxy's certificate is refused (permanent,
    naming the proxy), by both clients alike."""
    both = tmp_path / "both.pem"
    assert tls_proxy.tls is not None
    both.write_text(Path(tls_files[0]).read_text() + Path(tls_proxy.tls[0]).read_text())
    proxy_url = tls_proxy.url(f"{PROXY_USER}:{PROXY_PASSWORD}")
    target = _sim_target(https_sim)
    set_conn(https_sim.url, proxy_url=proxy_url, ca_bundle=str(both), **TIMEOUTS)
    aid = https_sim.add_allocation(final_status="cleared")
    hook = OESHook()
    assert hook.get_allocation(aid).id == aid
    hook.close()
    event = await _first_event(aid)
    assert event["status"] == "terminal", event
    assert await asyncio.to_thread(tls_proxy.wait_for_connects, target, 2) == 2

    set_conn(https_sim.url, proxy_url=proxy_url, ca_bundle=tls_files[0], max_retries=3, **TIMEOUTS)
    requests_before = https_sim.request_count
    with pytest.raises(OESError, match="could not be verified") as info:
        OESHook().get_allocation(aid)
    assert not info.value.transient
    assert f"https://***@127.0.0.1:{tls_proxy.port}" in str(info.value)
    error = await _async_client_error(aid)
    assert "could not be verified" in str(error)
    assert not error.transient
    assert f"https://***@127.0.0.1:{tls_proxy.port}" in str(error)
    assert https_sim.request_count == requests_before
    _assert_secrets_absent(info.value, error)
