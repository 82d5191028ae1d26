"""One in-memory fake per port, shared by the unit tests of the service classes."""
