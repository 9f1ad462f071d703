"""`python -m youtu ...` (also what `torchrun -m youtu train` runs)."""

from youtu.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
