import sys
from concurrent.futures import ThreadPoolExecutor
from benchmarks.instructions import _collected
backend = sys.argv[2] if len(sys.argv) > 2 else "trio"
items = 10000
for case in sys.argv[1].split(","):
    with ThreadPoolExecutor(2) as ex:
        a = ex.submit(_collected, case, backend, 0); b = ex.submit(_collected, case, backend, items)
        print(case, backend, round((b.result() - a.result()) / items), flush=True)
