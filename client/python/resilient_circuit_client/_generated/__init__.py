"""Generated from proto/resilient_circuit/v1 by client/python/generate.py; do not edit."""
