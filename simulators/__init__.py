"""Stand-ins for plant equipment: real protocol servers driven by a small plant model.

:mod:`simulators.model` is the physics (pure, stepped in time); one module per
protocol exposes it as a device (Modbus TCP, S7, EtherNet/IP, OPC UA, MQTT).
Run one press with ``python -m simulators <protocol>`` (see
``simulators/__main__.py``). Simulators are peers of the drivers: they share
only the plant file's format (:mod:`plantfile`), never the drivers' code.
"""
