import cProfile, pstats, sys, trio
sys.argv=[sys.argv[0]]
from benchmarks.instructions import _run_case
case = sys.argv_case if False else None
import os
case=os.environ["CASE"]; n=int(os.environ.get("N","20000"))
trio.run(_run_case, case, 100)
pr=cProfile.Profile(); pr.enable()
trio.run(_run_case, case, n)
pr.disable()
st=pstats.Stats(pr); st.sort_stats("tottime").print_stats(25)
