#!/usr/bin/env python3
"""Fuzz the HTTP, UDP or line door's parser with atheris: the entry point of tools/fuzzing/.

    python tools/fuzz.py http --seconds 300
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzzing.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
