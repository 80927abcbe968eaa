"""The plant file's model: devices, tags, protocol blocks, alarm conditions, the loader."""
