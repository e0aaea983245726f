"""Run every benchmark: ``python -m benchmarks [name ...]``."""

import importlib
import sys

SUITES = ("imaging_bench", "clinical_bench", "inference_bench")


def main(argv: list[str]) -> int:
    """Run the named suites, or all of them; return non-zero if one failed."""
    failed = []
    for name in argv or SUITES:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            sys.stderr.write(f"{name}: not available ({exc})\n")
            failed.append(name)
            continue
        sys.stdout.write(f"\n== {name} ==\n")
        sys.stdout.flush()
        if module.main([]) != 0:
            failed.append(name)
    if failed:
        sys.stderr.write(f"benchmarks that failed or are missing: {failed}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
