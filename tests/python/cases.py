"""Runs every `case_*` coroutine of a test script; prints one line per case and a
closing 'N passed, M failed' line, and exits non-zero if any failed."""
import asyncio
import sys
import traceback


def run(namespace, timeout=60):
    async def main():
        cases = [(n, f) for n, f in namespace.items() if n.startswith("case_")]
        passed = failed = 0
        for name, f in cases:
            try:
                await asyncio.wait_for(f(), timeout)
                print(f"ok   {name}")
                passed += 1
            except Exception:
                print(f"FAIL {name}")
                traceback.print_exc()
                failed += 1
        print(f"{passed} passed, {failed} failed")
        return failed

    sys.exit(1 if asyncio.run(main()) else 0)
