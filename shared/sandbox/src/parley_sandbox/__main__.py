"""``python -m parley_sandbox``: the same as the ``parley-sandbox`` command."""

from parley_sandbox.app import main

main()
