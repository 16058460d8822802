"""Pulumi's entry point (`main: infra/` in Pulumi.yaml): it only composes, see infra/program.py."""

import sys
from pathlib import Path

# Pulumi runs this file with infra/ on sys.path; the repository root makes `infra` a package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.program import main

main()
