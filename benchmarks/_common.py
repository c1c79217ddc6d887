"Helpers shared by the benchmark scripts: what machine ran them, which CPU capability torch used, and how busy it was."
import json, os, platform, subprocess, sys, time
from pathlib import Path

OUT = Path(__file__).resolve().parent/'results'
ROOT = Path(__file__).resolve().parents[1]
RBNB = str(Path(sys.executable).parent/'rbnb')

# Environment variables that cap the instruction set torch, oneDNN and MKL use: how an AVX2-only CPU is emulated.
ISA_CAPS = ('ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'MKL_ENABLE_INSTRUCTIONS')
EMULATE_AVX2 = dict(ATEN_CPU_CAPABILITY='avx2', ONEDNN_MAX_CPU_ISA='AVX2', MKL_ENABLE_INSTRUCTIONS='AVX2')

def cpu_info()->tuple:
    "(CPU model name, CPU flags) from /proc/cpuinfo; (platform.processor(), []) where there is none."
    info = Path('/proc/cpuinfo').read_text() if Path('/proc/cpuinfo').exists() else ''
    field = lambda name: next((l.split(':', 1)[1].strip() for l in info.splitlines() if l.startswith(name)), None)
    return field('model name') or platform.processor(), (field('flags') or '').split()

def cpu_kind()->dict:
    "The CPU as the toolkit sees it: torch's capability, bf16 instructions, the `auto` precision and why, and any ISA cap in effect."
    import torch
    from rewardbench_nb.precision import precision
    cpu, flags = cpu_info()
    p, caps = precision('cpu'), {k: os.environ[k] for k in ISA_CAPS if k in os.environ}
    have = [f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if f in flags]
    label = f"{p.cpu_capability}, {'native bf16' if p.dtype == 'bfloat16' else 'no native bf16'}"
    if caps: label += f" (emulated on a CPU with {', '.join(have)}: {' '.join(f'{k}={v}' for k, v in caps.items())})"
    return dict(cpu=cpu, cores=os.cpu_count(), torch_capability=p.cpu_capability, cpu_flags=have, auto_precision=p.dtype,
                precision_reason=p.reason, matmul_gflops=dict(bfloat16=p.bf16_gflops, float32=p.fp32_gflops),
                isa_caps=caps or None, label=label)

def kind_slug(kind:dict)->str:
    "A file-name tag for a CPU kind, e.g. 'avx512-bf16', 'avx512-bf16-amx' (bf16 matrix tiles too) or 'avx2'."
    bf16 = '-bf16' + ('-amx' if 'amx_bf16' in kind['cpu_flags'] else '') if kind['auto_precision'] == 'bfloat16' else ''
    return kind['torch_capability'].lower() + bf16

def loadavg()->list:
    "The 1, 5 and 15-minute load averages, rounded."
    return [round(x, 2) for x in os.getloadavg()]

def busy_note(top:float,    # highest 1-minute load seen during the run
              threads:int,  # threads the benchmark itself kept busy
             )->str:
    "Whether other work shared the cores: the 1-minute load beyond the benchmark's own threads."
    if top > threads + 1: return (f'the machine was BUSY: 1-minute load up to {top:.2f} while our {threads} threads ran, so other work shared '
                                  'the cores; absolute numbers are pessimistic and noisy, ratios measured in turns are the meaningful part')
    return f'the machine was otherwise idle: 1-minute load at most {top:.2f}, of which our own {threads} threads account for up to {threads}'

def rbnb(*args)->tuple:
    "Run `rbnb ARGS` from the repository root: (wall seconds, completed process); stops the benchmark on failure."
    t = time.perf_counter()
    r = subprocess.run([RBNB, *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if r.returncode: sys.exit(f"rbnb {' '.join(map(str, args))} failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t, r

def train_rm(runs:Path, run_id:str='base')->tuple:
    "train-rm at its defaults in `runs/run_id`: (run folder, seconds)."
    secs, _ = rbnb('run', '--until', 'train-rm', '--quiet', '--runs-dir', runs, '--run-id', run_id)
    return runs/run_id, round(secs, 1)

def record_args(ap, name:str, render)->tuple:
    "Parse the script's options plus --render: (args, CPU kind, record path without suffix); --render rewrites the .md and exits."
    ap.add_argument('--render', action='store_true', help='write the .md again from the .json; run nothing')
    a, kind = ap.parse_args(), cpu_kind()
    path = OUT/f'{name}-{kind_slug(kind)}'
    if a.render:
        path.with_suffix('.md').write_text(render(json.loads(path.with_suffix('.json').read_text())))
        sys.exit(0)
    return a, kind, path
