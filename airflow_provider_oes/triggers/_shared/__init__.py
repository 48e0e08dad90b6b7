"""What every part of the triggerer engine shares within one event loop: registries, connections, waiters."""
