"""`crossview hub` as a real process: config + overrides, tokens printed, health, Hello/Welcome, REST API, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crossview.api_client import http_client
from crossview.config import ConfigError, load_config
from crossview.hub_command import HubConfig, create_hub
from protos.crossview.v1 import edge_to_hub_pb2, session_pb2, session_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
EDGE_MODEL = "reid/intel-0288"


def _fingerprint() -> str:
    from models.zoo import MODELS

    return next(s.fingerprint for s in MODELS if s.name == EDGE_MODEL)


def test_config_defaults_overrides_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("data_dir: /srv/hub\nport: 7443\ncreate_tokens: [edge-1]\n")
    cfg = load_config(HubConfig, path, ["host=0.0.0.0", "create_tokens=[a, b]", "judge=openai"])
    assert (cfg.data_dir, cfg.port, cfg.host, cfg.judge) == ("/srv/hub", 7443, "0.0.0.0", "openai")
    assert cfg.create_tokens == ["a", "b"]
    assert cfg.database is None and cfg.tls_cert is None
    with pytest.raises(ConfigError, match="port"):
        load_config(HubConfig, None, ["port=70000"])
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        load_config(HubConfig, None, ["tls_cert=hub.pem"])
    with pytest.raises(ConfigError, match="did you mean"):
        load_config(HubConfig, None, ["prot=1"])
    cfg = load_config(HubConfig, None, [])
    assert (cfg.api_host, cfg.api_port, cfg.admin_user, cfg.admin_password) == ("127.0.0.1", 8080, "admin", None)
    assert load_config(HubConfig, None, ["api_port=-1"]).api_port == -1
    with pytest.raises(ConfigError, match="api_port"):
        load_config(HubConfig, None, ["api_port=-2"])
    assert cfg.allow_new_identities is False
    assert load_config(HubConfig, None, ["allow_new_identities=true"]).allow_new_identities is True
    with pytest.raises(ConfigError, match="allow_new_identities"):
        load_config(HubConfig, None, ["allow_new_identities=maybe"])


def test_judge_options_reach_the_judge(tmp_path: Path, models_dir: Path) -> None:
    """`judge_options` are the judge's own keyword arguments (e.g. the transformers judge's `adapter`)."""
    from models.verify import JudgeConfigError

    cfg = load_config(HubConfig, None, [f"data_dir={tmp_path}", "judge_options={cache_size: 7}"])
    assert cfg.judge_options == {"cache_size": 7}
    hub = create_hub(cfg)
    try:
        assert hub.shortlists.verifier.judge.cache_size == 7  # type: ignore[attr-defined]
    finally:
        asyncio.run(hub.stop())
    with pytest.raises(ConfigError, match="judge_options"):
        load_config(HubConfig, None, ["judge_options=[adapter]"])
    with pytest.raises(JudgeConfigError, match="adapter"):
        options = "judge_options={base_url: 'http://127.0.0.1:9', model: m, adapter: /x}"
        create_hub(load_config(HubConfig, None, [f"data_dir={tmp_path / 'b'}", "judge=openai", options]))


@pytest.mark.parametrize("allow", [True, False])
def test_allow_new_identities_reaches_the_hub_s_decisions(tmp_path: Path, models_dir: Path, allow: bool) -> None:
    """Edges with send_unmatched=true get automatic identities only from a hub that allows them."""
    cfg = load_config(HubConfig, None, [f"data_dir={tmp_path}", f"allow_new_identities={str(allow).lower()}"])
    hub = create_hub(cfg)
    try:
        assert hub.shortlists.verifier.policy.allow_new_identities is allow  # type: ignore[attr-defined]
    finally:
        asyncio.run(hub.stop())


def _read_until(proc: subprocess.Popen[str], prefix: str, timeout: float, lines: list[str]) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no {prefix!r} line; output {lines}; stderr {proc.stderr.read() if proc.stderr else ''}")


async def _check_running(port: int, token: str, fingerprint: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reply = await health.Check(health_pb2.HealthCheckRequest(service="crossview.v1.EdgeHub"), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        call = session_pb2_grpc.EdgeHubStub(channel).Session(metadata=(("authorization", f"Bearer {token}"),))
        await call.write(session_pb2.EdgeMessage(hello=edge_to_hub_pb2.Hello(
            edge_id="edge-cli", site="test", model_fingerprint=fingerprint)))
        welcome = await asyncio.wait_for(call.read(), 60)
        assert welcome is not grpc.aio.EOF and welcome.WhichOneof("body") == "welcome", welcome
        assert welcome.welcome.accepted_model_fingerprint == fingerprint
        await call.done_writing()
        call.cancel()


async def _watch_until_end(port: int, proc: subprocess.Popen[str]) -> list[int]:
    """Watch health, SIGTERM the hub once SERVING is seen; every status seen until the stream ends."""
    seen: list[int] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        try:
            async for reply in watch:
                seen.append(reply.status)
                if reply.status == health_pb2.HealthCheckResponse.SERVING and len(seen) == 1:
                    proc.send_signal(signal.SIGTERM)
        except grpc.aio.AioRpcError:
            pass  # the server went away
    return seen


def _check_api(url: str, user: str, password: str) -> None:
    assert url.startswith("http://127.0.0.1:"), url
    with http_client(url, timeout_s=30) as client:
        assert client.get("/api/health").json()["status"] == "ok"
        assert client.get("/api/identities").status_code == 401
        token = client.post("/api/login", json={"username": user, "password": password}).json()["token"]
        reply = client.get("/api/identities", headers={"authorization": f"Bearer {token}"})
        assert reply.status_code == 200 and reply.json() == []


def test_hub_serves_until_sigterm(tmp_path: Path, models_dir: Path) -> None:
    try:
        fingerprint = _fingerprint()
    except StopIteration:
        pytest.skip(f"{EDGE_MODEL} is not in the zoo")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CROSSVIEW_MODELS": str(models_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "crossview.cli", "hub", f"data_dir={tmp_path / 'hub'}", "port=0",
         "create_tokens=[edge-cli]", "log_level=WARNING", "api_port=0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        token_line = _read_until(proc, "token ", 120, lines)
        _, edge_id, token = token_line.split()
        assert edge_id == "edge-cli" and token
        _, user, password = _read_until(proc, "operator ", 120, lines).split()
        api_url = _read_until(proc, "api on ", 120, lines).split()[-1]
        serving = _read_until(proc, "serving on ", 120, lines)
        port = int(serving.rsplit(":", 1)[1])
        _check_api(api_url, user, password)
        asyncio.run(_check_running(port, token, fingerprint))
        seen = asyncio.run(_watch_until_end(port, proc))
        assert seen[0] == health_pb2.HealthCheckResponse.SERVING
        assert health_pb2.HealthCheckResponse.NOT_SERVING in seen, seen
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
        database = (tmp_path / "hub" / "hub.db").read_bytes()
        assert not database.count(token.encode()), "token stored in clear"
        assert not database.count(password.encode()), "operator password stored in clear"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_tokens_file(tmp_path: Path, models_dir: Path) -> None:
    """tokens_file: written with mode 0600, not printed; SIGINT also ends with 0."""
    tokens = tmp_path / "tokens.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "crossview.cli", "hub", f"data_dir={tmp_path / 'hub'}", "port=0",
         "create_tokens=[e1, e2]", f"tokens_file={tokens}", "log_level=WARNING", "api_port=-1"],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    lines: list[str] = []
    try:
        _read_until(proc, "serving on ", 120, lines)
        assert not any(line.startswith(("token ", "api on ", "operator ")) for line in lines)
        rows = [line.split() for line in tokens.read_text().splitlines()]
        assert [r[0] for r in rows] == ["e1", "e2"] and all(len(r) == 2 for r in rows)
        assert tokens.stat().st_mode & 0o777 == 0o600
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_admin_password_from_the_environment(tmp_path: Path, models_dir: Path) -> None:
    """CROSSVIEW_ADMIN_PASSWORD sets the operator's password: nothing is generated or printed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CROSSVIEW_ADMIN_PASSWORD": "from the environment",
           "CROSSVIEW_MODELS": str(models_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "crossview.cli", "hub", f"data_dir={tmp_path / 'hub'}", "port=0", "api_port=0",
         "admin_user=ops", "log_level=WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        api_url = _read_until(proc, "api on ", 120, lines).split()[-1]
        _read_until(proc, "serving on ", 120, lines)
        assert not any(line.startswith("operator ") for line in lines), lines
        _check_api(api_url, "ops", "from the environment")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
