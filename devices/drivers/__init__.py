"""Protocol drivers, one module per protocol, each implementing :class:`devices.driver.Driver`."""
