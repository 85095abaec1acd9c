"""Frame and sensor sources behind one small interface (`base.FrameSource`); `factory.open_source` picks one."""
