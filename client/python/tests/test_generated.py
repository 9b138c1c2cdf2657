"""The committed gRPC code is what generate.py makes from proto/ today."""

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import generate  # noqa: E402


def test_generated_code_is_fresh(tmp_path):
    written = generate.generate(into=tmp_path)
    assert {p.name for p in written} == {
        "__init__.py",
        "types_pb2.py",
        "protector_pb2.py",
        "admin_pb2.py",
        "protector_pb2_grpc.py",
        "admin_pb2_grpc.py",
    }
    committed = generate.PACKAGE_DIR
    stale = [p.name for p in written if (committed / p.name).read_text() != p.read_text()]
    extra = {p.name for p in committed.glob("*.py")} - {p.name for p in written}
    assert not stale, f"regenerate with `python3 client/python/generate.py`: {stale} differ"
    assert not extra, f"files not made by generate.py: {extra}"


def test_generated_imports_are_relative():
    for path in generate.PACKAGE_DIR.glob("*.py"):
        assert "from resilient_circuit.v1" not in path.read_text(), path.name
