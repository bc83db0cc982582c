"""The ``referee`` command line: discover, verify, sign, serve."""
