class BackendUnavailable(RuntimeError):
    """A robot backend that cannot start here: its SDK is missing, or the robot cannot be reached."""
