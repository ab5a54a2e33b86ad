"""The committed generated code must be exactly what tools/gen_protos.py makes from the .proto files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = Path("protos/crossview/v1")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
FIX = "run `python tools/gen_protos.py` and commit the result"


def _generated_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name.endswith(GENERATED_SUFFIXES)}


def _first_difference(committed: bytes, fresh: bytes) -> str:
    old, new = committed.decode(errors="replace").splitlines(), fresh.decode(errors="replace").splitlines()
    for number, (a, b) in enumerate(zip(old, new, strict=False), start=1):
        if a != b:
            col = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            lo = max(0, col - 20)
            return f"line {number} col {col + 1}: committed {a[lo:col + 40]!r}, generated {b[lo:col + 40]!r}"
    return f"committed has {len(old)} lines, generated has {len(new)}"


@pytest.fixture(scope="module")
def fresh_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("generated")
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "gen_protos.py"), "--out", str(out)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"tools/gen_protos.py failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return _generated_files(out / PROTO_DIR)


def test_committed_stubs_match_the_protos(fresh_files: dict[str, bytes]) -> None:
    committed = _generated_files(REPO_ROOT / PROTO_DIR)
    problems = []
    for name in sorted(committed.keys() | fresh_files.keys()):
        path = PROTO_DIR / name
        if name not in committed:
            problems.append(f"{path}: missing (the .proto files generate it)")
        elif name not in fresh_files:
            problems.append(f"{path}: stale (no .proto generates it any more)")
        elif committed[name] != fresh_files[name]:
            problems.append(f"{path}: out of date, {_first_difference(committed[name], fresh_files[name])}")
    if problems:
        pytest.fail(
            "generated protobuf code differs from the .proto files; " + FIX + ":\n  " + "\n  ".join(problems),
            pytrace=False,
        )


def test_generation_is_deterministic(fresh_files: dict[str, bytes], tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "gen_protos.py"), "--out", str(tmp_path)],
        capture_output=True, check=True,
    )
    assert _generated_files(tmp_path / PROTO_DIR) == fresh_files


def test_edge_hub_has_one_bidirectional_session() -> None:
    from protos.crossview.v1 import session_pb2, session_pb2_grpc

    service = session_pb2.DESCRIPTOR.services_by_name["EdgeHub"]
    assert [m.name for m in service.methods] == ["Session"]
    session = service.methods_by_name["Session"]
    assert session.client_streaming and session.server_streaming
    assert session.input_type.full_name == "crossview.v1.EdgeMessage"
    assert session.output_type.full_name == "crossview.v1.HubMessage"
    assert hasattr(session_pb2_grpc, "EdgeHubStub") and hasattr(session_pb2_grpc, "EdgeHubServicer")


def test_no_vector_travels_as_repeated_floats() -> None:
    """Embeddings go as Vector (bytes + dtype + shape + fingerprint), never as `repeated float`."""
    from google.protobuf.descriptor import FieldDescriptor

    from protos.crossview.v1 import common_pb2, edge_to_hub_pb2, hub_to_edge_pb2, session_pb2

    floats = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}
    offenders = [
        f"{message.full_name}.{field.name}"
        for module in (common_pb2, edge_to_hub_pb2, hub_to_edge_pb2, session_pb2)
        for message in module.DESCRIPTOR.message_types_by_name.values()
        for field in message.fields
        if field.type in floats and field.is_repeated
    ]
    assert offenders == []
    vector = common_pb2.Vector.DESCRIPTOR
    assert [f.name for f in vector.fields] == ["data", "dtype", "shape", "model_fingerprint"]
