"""The settlement watcher's change source and record description (``docs/internals/settlement-events.rst``)."""
