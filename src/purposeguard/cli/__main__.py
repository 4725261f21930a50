"""``python -m purposeguard.cli``."""

from __future__ import annotations

from purposeguard.cli import main

if __name__ == "__main__":
    main()
