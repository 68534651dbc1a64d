#!/usr/bin/python3
"""Reference digests for tests/unit/test_sha256.c: prints hashlib's SHA-256 of
each file named on the command line, one lower-case hex digest per line, in
argument order. Run with /usr/bin/python3."""
import hashlib
import sys


def main():
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            print(hashlib.sha256(f.read()).hexdigest())


if __name__ == "__main__":
    main()
