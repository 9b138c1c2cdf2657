"""Tables of a fast_paths.sh log: per run and median (ratio to echo for Session and library; p50/p99 and the timer floor for cached).

    client/loadgen/scripts/fast_paths.sh > fast.log; python3 client/loadgen/scripts/fast_paths_summary.py fast.log
"""
import json,re,sys,statistics
txt=open(sys.argv[1]).read()
# split records: lines starting with TAG ... {json}
recs=re.findall(r'^(SESSION|LIBRARY|CACHED) (\S+) run=(\d) load=(\S+) (\{.*?\n\})', txt, re.M|re.S)
rows={}
for tag,arg,run,load,js in recs:
    j=json.loads(js)
    rows.setdefault((tag,arg),[]).append((int(run),float(load),j))
for (tag,arg),rs in rows.items():
    print(f"== {tag} {arg}")
    for run,load,j in rs:
        if tag in ('SESSION','LIBRARY'):
            print(f"| {run} | {load} | {j['decisions_per_sec']:,.0f} | {j['p50_us']:.0f} / {j['p99_us']:.0f} | {j['baseline_decisions_per_sec']:,.0f} | {j['ratio_to_baseline']:.3f} |")
        else:
            floor=j.get('timer_floor_p50_ns')
            print(f"| {run} | {load} | {j['decisions_per_sec']:,.0f} | {j['p50_us']:.3f} | {j['p99_us']:.3f} | {j['p999_us']:.3f} | {'-' if floor is None else floor} |")
    if tag in ('SESSION','LIBRARY'):
        print("median ratio", statistics.median(j['ratio_to_baseline'] for _,_,j in rs), "median dps", statistics.median(j['decisions_per_sec'] for _,_,j in rs), "median echo", statistics.median(j['baseline_decisions_per_sec'] for _,_,j in rs))
    else:
        print("median p50", statistics.median(j['p50_us'] for _,_,j in rs), "p99", statistics.median(j['p99_us'] for _,_,j in rs), "timer floor ns", statistics.median(j.get('timer_floor_p50_ns',0) for _,_,j in rs), "dps", statistics.median(j['decisions_per_sec'] for _,_,j in rs))
for l in txt.splitlines():
    if l.startswith('PYTHON'): print(l)
