"""The pipeline end to end: wall time and peak memory of `rbnb run --quick` and `rbnb run`, per stage.

Each run is a subprocess, `rbnb run [--quick] --quiet` from the repository root (so `configs/` holds its settings, as
in `make run`), writing to a temporary runs folder. From each run:

* per stage: wall seconds (the manifest's `timings`) and peak resident memory of the process (the manifest's
  `records.memory`: Linux VmHWM, reset when the stage begins, so each stage's own peak);
* the whole command: wall seconds from start to exit (start-up and imports included) beside the manifest's
  `total_seconds`; its peak resident memory, the largest of the stages' peaks; and the peak of the summed resident
  memory of the whole process tree, sampled every 0.5 s (psutil, when installed). The command's own rusage (`wait4`,
  what `/usr/bin/time -v` reports as "Maximum resident set size") is kept too, but it is not the run's peak: the
  per-stage reset of VmHWM resets the high-water mark that rusage reads, so it reports the peak since the last stage
  began;
* the CPU kind (`_common.cpu_kind`) and the 1-minute load average at the start, the highest seen and at the end.

    .venv/bin/python benchmarks/bench_pipeline.py               # -> benchmarks/results/pipeline-<cpu kind>.{json,md}
    .venv/bin/python benchmarks/bench_pipeline.py --runs quick  # only `rbnb run --quick` (minutes)
    .venv/bin/python benchmarks/bench_pipeline.py --render      # the .md again from the .json, nothing run
"""
import argparse, json, os, subprocess, sys, tempfile, threading, time
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
import pandas as pd
from rewardbench_nb.core import package_versions, write_json, write_text
from rewardbench_nb.curation import md_table
from _common import busy_note, cpu_kind, kind_slug, loadavg

OUT = Path(__file__).resolve().parent/'results'
ROOT = Path(__file__).resolve().parents[1]
RUNS = {'quick': ['--quick'], 'full': []}   # name -> extra arguments of `rbnb run`

class TreeWatch:
    "While the block runs: the highest 1-minute load and the peak summed RSS (MiB) of process `pid` and its children."
    def __init__(self, pid:int, every:float=0.5): self.pid, self.every = pid, every
    def __enter__(self):
        self.top_load, self.tree_mib, self._stop = loadavg()[0], None, threading.Event()
        try: import psutil; self._proc = psutil.Process(self.pid)
        except Exception: self._proc = None   # psutil missing or the process gone already
        self._t = threading.Thread(target=self._watch, daemon=True); self._t.start(); return self
    def _tree_rss(self)->float|None:
        try: procs = [self._proc, *self._proc.children(recursive=True)]
        except Exception: return None
        total = 0
        for p in procs:
            try: total += p.memory_info().rss
            except Exception: pass   # a child that ended between listing and reading
        return total / 2**20
    def _watch(self):
        n = 0
        while not self._stop.wait(self.every):
            if self._proc is not None and (mib := self._tree_rss()) is not None:
                self.tree_mib = max(self.tree_mib or 0., mib)
            n += 1
            if n % 10 == 0: self.top_load = max(self.top_load, loadavg()[0])
    def __exit__(self, *a): self._stop.set(); self._t.join(); self.top_load = max(self.top_load, loadavg()[0])

def rbnb_run(name:str, runs:Path)->dict:
    "Run `rbnb run` with RUNS[name]'s arguments; its manifest, wall seconds, largest process's and tree's peak MiB."
    cmd = [str(Path(sys.executable).parent/'rbnb'), 'run', *RUNS[name], '--quiet', '--runs-dir', str(runs), '--run-id', name]
    log, start = runs/f'{name}.log', loadavg()
    with open(log, 'w') as f:
        t = time.perf_counter(); p = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        with TreeWatch(p.pid) as w:
            _, status, usage = os.wait4(p.pid, 0)   # the rusage of this command alone (ru_maxrss in KiB on Linux)
        wall, p.returncode = time.perf_counter() - t, os.waitstatus_to_exitcode(status)
    if p.returncode: raise RuntimeError(f"{' '.join(cmd[1:])} failed (exit {p.returncode}):\n{log.read_text()[-3000:]}")
    m = json.loads((runs/name/'manifest.json').read_text())
    return dict(command='rbnb ' + ' '.join(['run', *RUNS[name]]), manifest=m, wall_seconds=round(wall, 1),
                rusage_maxrss_mib=round(usage.ru_maxrss / 1024, 1),
                tree_mib=None if w.tree_mib is None else round(w.tree_mib, 1),
                load=dict(start=start, top=w.top_load, end=loadavg(), note=busy_note(w.top_load, os.cpu_count())))

def stage_table(m:dict)->pd.DataFrame:
    "One row per stage of a manifest, in pipeline order: seconds, share of the run, the peak resident MiB during it."
    from rewardbench_nb.cli import all_stages
    order = {s: i for i, s in enumerate(all_stages())}
    mem, total = m['records'].get('memory', {}), m['total_seconds']
    rows = [dict(stage=s, seconds=round(t, 1), share=f'{t / total:.0%}', peak_mib=mem.get(s))
            for s, t in sorted(m['timings'].items(), key=lambda kv: order.get(kv[0], len(order)))]
    rest = total - sum(m['timings'].values())   # settings checks, manifest, report: what no stage timed
    return pd.DataFrame([*rows, dict(stage='(outside the stages)', seconds=round(rest, 1), share=f'{rest / total:.0%}',
                                     peak_mib='')])

def summary(r:dict)->dict:
    "What the results file keeps of one run: the command's totals, the stage table and the manifest's details."
    m, stages = r['manifest'], stage_table(r['manifest'])
    peak = max((v for k, v in m['records'].get('memory', {}).items() if k != 'how'), default=None)
    return dict(command=r['command'], wall_seconds=r['wall_seconds'], total_seconds=m['total_seconds'],
                peak_mib=peak, tree_mib=r['tree_mib'], rusage_maxrss_mib=r['rusage_maxrss_mib'], load=r['load'],
                stages=stages.to_dict('records'), memory_how=m['records'].get('memory', {}).get('how'),
                timings_detail=m['records'].get('timings', {}), code=m['code'], started=m['started'])

def report(r:dict)->str:
    "The markdown page of the results."
    k = r['machine']
    lines = [f"# Pipeline, end to end: {k['label']}", '', __doc__.split('\n\n')[1].replace('\n', ' '), '',
             __doc__.split('\n\n')[2].replace('\n  ', ' '), '',
             f"Machine: {k['cpu']}, {k['cores']} cores, torch capability **{k['torch_capability']}**, flags "
             f"{', '.join(k['cpu_flags'])}; `auto` precision: **{k['auto_precision']}** ({k['precision_reason']}); "
             f"torch {r['versions']['torch']}, transformers {r['versions']['transformers']}.", '']
    for name in RUNS:
        if name not in r['runs']: continue
        x = r['runs'][name]; code = x['code']
        lines += [f"## `{x['command']}`", '',
                  f"**{x['wall_seconds']} s** ({x['wall_seconds'] / 60:.1f} min) from start to exit; the manifest's "
                  f"total {x['total_seconds']} s. Peak resident memory **{x['peak_mib']} MiB** (the largest stage peak)"
                  + (f"; whole process tree, sampled every 0.5 s, {x['tree_mib']} MiB" if x['tree_mib'] else '')
                  + f"; the command's rusage {x['rusage_maxrss_mib']} MiB (since the last stage began). "
                  f"Started {x['started']}; code: {code.get('commit', code.get('version'))}"
                  f"{' (with uncommitted changes)' if code.get('dirty') else ''}. "
                  f"Load average at start {x['load']['start']}, highest {x['load']['top']}, at end {x['load']['end']}: "
                  f"{x['load']['note']}.", '',
                  md_table(pd.DataFrame(x['stages'])[['stage', 'seconds', 'share', 'peak_mib']], floatfmt='.1f'), '',
                  f"peak_mib: {x['memory_how']}.", '']
    return '\n'.join(lines)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--runs', default=','.join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    ap.add_argument('--out', type=Path, default=OUT, help='results folder')
    ap.add_argument('--render', action='store_true', help='write the .md again from the .json; run nothing')
    args = ap.parse_args()
    names = [n.strip() for n in args.runs.split(',') if n.strip()]
    if bad := [n for n in names if n not in RUNS]: sys.exit(f"--runs: unknown run {bad[0]!r}; expected {', '.join(RUNS)}")
    kind = cpu_kind(); path = args.out/f'pipeline-{kind_slug(kind)}.json'
    r = json.loads(path.read_text()) if path.exists() else {}   # a run not repeated keeps its earlier result
    if args.render: write_text(path.with_suffix('.md'), report(r)); print(report(r)); return
    r.update(machine=kind, versions=package_versions(('torch', 'transformers', 'trl', 'rewardbench_nb')))
    r.setdefault('runs', {})
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f'rbnb run {" ".join(RUNS[name])} ...', flush=True)
            r['runs'][name] = summary(rbnb_run(name, Path(tmp)))
            args.out.mkdir(parents=True, exist_ok=True)   # after each run: a crash keeps the rest
            write_json(path, r); write_text(path.with_suffix('.md'), report(r))
    print(report(r)); print(f'written: {path}, {path.with_suffix(".md")}')

if __name__ == '__main__': main()
