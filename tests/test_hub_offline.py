"""Hub names fail at once, in one line, when the hub cannot be used: no retry loop.

"At once" is checked by counting network connections (never by timing): with an offline
variable set there must be none; with the hub host unreachable, only kanzoo's single probe.
"""

import socket

import pytest

from kanzoo import _hub

HUB_CALLS = {
    "text dataset": lambda: __import__("kanzoo.data", fromlist=["build_data"]).build_data(
        "text", path_or_hub_name="no-such-user/no-such-corpus"
    ),
    "hf_segmentation": lambda: __import__("kanzoo.data", fromlist=["build_data"]).build_data(
        "hf_segmentation", path_or_hub_name="no-such-user/no-such-masks"
    ),
    "tokenizer": lambda: __import__("kanzoo.data", fromlist=["load_tokenizer"]).load_tokenizer(
        "no-such-user/no-such-tokenizer"
    ),
    "model": lambda: __import__("kanzoo", fromlist=["from_pretrained"]).from_pretrained(
        "no-such-user/no-such-model"
    ),
}


@pytest.fixture
def connections(monkeypatch):
    """Every TCP connection attempt made in the test, as (host, port)."""
    seen = []
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            seen.append(address[:2])
        return real_connect(self, address)

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        seen.append((host, "dns"))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


def _offline_env(monkeypatch, on: bool):
    """Set or clear the offline variables; the libraries themselves start in online mode (they read
    the variables at import, and conftest imported them offline), so only kanzoo can stop them."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1") if on else monkeypatch.delenv(var, raising=False)
    for proxy in _hub._PROXIES:
        monkeypatch.delenv(proxy, raising=False)


@pytest.mark.parametrize("what", sorted(HUB_CALLS))
def test_offline_variables_mean_no_network_and_one_line(what, monkeypatch, connections):
    _offline_env(monkeypatch, on=True)
    with pytest.raises(OSError) as info:
        HUB_CALLS[what]()
    message = str(info.value)
    assert "\n" not in message and "no-such-user/no-such-" in message
    assert "OFFLINE is set" in message, message
    assert connections == [], connections


@pytest.mark.parametrize("what", sorted(HUB_CALLS))
def test_unreachable_hub_is_probed_once_then_cache_only(what, monkeypatch, connections):
    # Without offline variables and without a network: a closed local port stands for the hub.
    _offline_env(monkeypatch, on=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(OSError) as info:
        HUB_CALLS[what]()
    message = str(info.value)
    assert "\n" not in message and "127.0.0.1 cannot be reached" in message, message
    hub_attempts = [c for c in connections if c[0] not in ("127.0.0.1", "localhost")]
    assert hub_attempts == [], hub_attempts  # the libraries ran cache-only: nothing after the probe
    assert connections.count(("127.0.0.1", port)) <= 1  # the probe, once per process


def test_reachable_hub_is_not_reported_unavailable(monkeypatch):
    _offline_env(monkeypatch, on=False)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert _hub.hub_unavailable("dataset") is None
    finally:
        server.close()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert _hub.hub_unavailable("dataset") == "HF_DATASETS_OFFLINE is set"
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")  # as in datasets: it overrides HF_HUB_OFFLINE
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _hub.offline_variable("dataset") is None and _hub.offline_variable("model") == "HF_HUB_OFFLINE"
