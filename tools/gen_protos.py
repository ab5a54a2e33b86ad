"""Regenerate the Python code for the wire contract in protos/crossview/v1/.

    python tools/gen_protos.py              # write *_pb2.py, *_pb2.pyi, *_pb2_grpc.py beside the protos
    python tools/gen_protos.py --out DIR    # write them under DIR/protos/crossview/v1/ instead

The generated files are committed; tests/protos/test_stubs_fresh.py regenerates them and fails on
any difference. The output depends only on the .proto files and the pinned grpcio-tools version:
protoc runs from the repository root on sorted relative paths, so the paths it embeds never depend
on where the checkout lives. A `*_pb2_grpc.py` is written only for protos that declare a service.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = Path("protos/crossview/v1")  # relative to REPO_ROOT, also the import path of the protos
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
_SERVICE_RE = re.compile(r"^\s*service\s+\w+", re.MULTILINE)


def proto_files() -> list[Path]:
    """The .proto files of the contract, relative to the repository root, in a stable order."""
    return sorted(p.relative_to(REPO_ROOT) for p in (REPO_ROOT / PROTO_DIR).glob("*.proto"))


def is_generated(path: Path) -> bool:
    return path.name.endswith(GENERATED_SUFFIXES)


def _protoc(args: list[str]) -> None:
    """Run grpc_tools' bundled protoc (never a system one) from the repository root."""
    well_known = resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO_ROOT}", f"-I{well_known}", *args]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"protoc failed (exit {done.returncode}):\n{done.stderr.strip()}")


def generate(out: Path) -> list[Path]:
    """Generate into out/protos/crossview/v1/; return the written files relative to `out`.

    Generated files left over from a .proto that no longer exists are removed, and files whose
    content is unchanged are not rewritten.
    """
    protos = proto_files()
    if not protos:
        raise SystemExit(f"no .proto files under {REPO_ROOT / PROTO_DIR}")
    with tempfile.TemporaryDirectory(prefix="crossview-protos-") as tmp:
        names = [str(p) for p in protos]
        _protoc([f"--python_out={tmp}", f"--pyi_out={tmp}", *names])
        with_service = [str(p) for p in protos if _SERVICE_RE.search((REPO_ROOT / p).read_text())]
        if with_service:
            _protoc([f"--grpc_python_out={tmp}", *with_service])
        fresh = {p.relative_to(tmp): p.read_bytes() for p in sorted(Path(tmp).rglob("*")) if p.is_file()}

    target_dir = out / PROTO_DIR
    target_dir.mkdir(parents=True, exist_ok=True)
    for stale in sorted(target_dir.iterdir()):
        if is_generated(stale) and stale.relative_to(out) not in fresh:
            stale.unlink()
    for rel, data in fresh.items():
        dest = out / rel
        if not dest.exists() or dest.read_bytes() != data:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
    return sorted(fresh)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT,
        help="root to write into; files land in OUT/protos/crossview/v1/ (default: the repository root)",
    )
    args = parser.parse_args(argv)
    out = args.out.resolve()
    written = generate(out)
    print(f"generated {len(written)} files in {out / PROTO_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
