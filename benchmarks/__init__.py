"""Harnesses that drive the project from outside: the HTTP benchmark, the soak, the fuzzer, and
the loopback server they and the end-to-end tests share. Not shipped: ``src/`` holds the package."""
