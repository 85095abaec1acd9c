"""scrypt password hashes and API token digests for the web app's config; `python -m dashboards.web.passwords`."""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import secrets
import sys

# scrypt cost: 16 MiB and ~50 ms per check on one core; enough against offline guessing of a leaked config.
N, R, P = 2**14, 8, 1


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The scrypt$n$r$p$salt$hash text the config stores."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether password matches a stored hash (constant time; False for a malformed hash)."""
    try:
        _, n, r, p, salt, want = stored.split("$")
        digest = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32,
            maxmem=256 * 1024 * 1024,
        )
        return hmac.compare_digest(digest, base64.b64decode(want))
    except ValueError:
        return False


def hash_token(token: str) -> str:
    """sha256 hex of an API token: tokens are long random strings, so a fast digest is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Print a password hash (read without echo) or a new API token and its digest."""
    parser = argparse.ArgumentParser(prog="python -m dashboards.web.passwords", description=main.__doc__)
    parser.add_argument("--token", action="store_true", help="make a new API token instead")
    args = parser.parse_args(argv)
    if args.token:
        token = secrets.token_urlsafe(32)
        print(f"token (give to the script): {token}\ntoken_sha256 (put in the config): {hash_token(token)}")
        return 0
    password = getpass.getpass("password: ")
    if not password or password != getpass.getpass("again: "):
        print("error: passwords are empty or differ", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
