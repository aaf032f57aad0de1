# Generated from proto/spooled/v1/spooled.proto by server/scripts/generate_grpc.py: do not edit.
"""Protobuf messages and gRPC stubs of the `spooled.v1` API."""
