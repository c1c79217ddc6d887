"Helpers shared by the benchmark scripts: what machine ran them and how busy it was."
import os, platform
from pathlib import Path

def cpu_info()->tuple:
    "(CPU model name, CPU flags) from /proc/cpuinfo; (platform.processor(), []) where there is none."
    info = Path('/proc/cpuinfo').read_text() if Path('/proc/cpuinfo').exists() else ''
    field = lambda name: next((l.split(':', 1)[1].strip() for l in info.splitlines() if l.startswith(name)), None)
    return field('model name') or platform.processor(), (field('flags') or '').split()

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
