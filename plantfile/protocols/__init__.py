"""Per protocol: how to reach a device (its connection block) and where each tag lives.

Each module holds one protocol's pydantic models for the plant file, and only
pure helpers that the protocol's driver and its simulator share (such as the
Modbus register encoding). The drivers themselves are in :mod:`devices.drivers`.
"""
