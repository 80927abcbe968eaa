"""Stand-ins for plant equipment: real protocol servers driven by a small plant model.

:mod:`simulators.model` is the physics (pure, stepped in time);
:mod:`simulators.modbus_server` exposes it as a Modbus TCP device. Run the demo
press with ``python -m simulators <protocol>`` (see ``simulators/__main__.py``).
"""
