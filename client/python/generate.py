"""Regenerates resilient_circuit_client/_generated/ from the contract in ../../proto.

Run it after changing a .proto file: `python3 client/python/generate.py`. The freshness
test runs `generate(into=...)` into a temporary directory and compares the result with the
committed files, so a contract change without regenerated code fails the tests.

The compiler writes absolute imports (`from resilient_circuit.v1 import types_pb2`); they
are rewritten as relative ones, so the generated modules live inside this package and never
collide with the `resilient_circuit` library a user may still have installed.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
PACKAGE_DIR = HERE / "resilient_circuit_client" / "_generated"
PROTOS = ("types.proto", "protector.proto", "admin.proto")
# Only files that define services get a *_pb2_grpc module worth keeping.
WITH_SERVICES = ("protector", "admin")

_ABSOLUTE = re.compile(r"^from resilient_circuit\.v1 import ", re.MULTILINE)

INIT = '"""Generated from proto/resilient_circuit/v1 by client/python/generate.py; do not edit."""\n'


def _compile(out: pathlib.Path) -> None:
    from importlib import resources

    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
    ]
    args += [str(PROTO_ROOT / "resilient_circuit" / "v1" / p) for p in PROTOS]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed; see its messages above")


def generate(into: pathlib.Path = PACKAGE_DIR) -> list[pathlib.Path]:
    """Writes the generated modules into `into`; returns the files written."""
    into.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = pathlib.Path(tmp)
        _compile(raw)
        v1 = raw / "resilient_circuit" / "v1"
        names = [f"{p.removesuffix('.proto')}_pb2.py" for p in PROTOS]
        names += [f"{s}_pb2_grpc.py" for s in WITH_SERVICES]
        for name in names:
            text = _ABSOLUTE.sub("from . import ", (v1 / name).read_text())
            target = into / name
            target.write_text(text)
            written.append(target)
    init = into / "__init__.py"
    init.write_text(INIT)
    written.append(init)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--into", type=pathlib.Path, default=PACKAGE_DIR)
    args = parser.parse_args()
    for path in generate(args.into):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
