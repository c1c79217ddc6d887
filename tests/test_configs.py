"configs/*.toml hold exactly the defaults of each stage's config dataclass; a key whose default is None is commented out."
import dataclasses, re, tomllib
from pathlib import Path
import pytest
from rewardbench_nb.core import RunConfig
from rewardbench_nb.cli import all_stages

CONFIGS = Path(__file__).resolve().parents[1]/'configs'
SECTIONS = {'run': RunConfig, **{s.section: s.config for s in all_stages().values()}}

def defaults(cls)->dict:
    "Field -> default of a config dataclass."
    return {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory()) for f in dataclasses.fields(cls)}

@pytest.mark.parametrize('name', sorted(SECTIONS))
def test_config_file_matches_defaults(name):
    path = CONFIGS/f'{name}.toml'
    assert path.exists(), f'{path} missing: every stage ships its defaults in configs/'
    text, want = path.read_text(), defaults(SECTIONS[name])
    assert tomllib.loads(text) == {k: v for k, v in want.items() if v is not None}
    for key in [k for k, v in want.items() if v is None]:  # "unset: another setting decides" keys are shown, commented out
        assert re.search(rf'^#\s*{key}\s*=', text, re.M), f"{path}: {key} (default None) should appear commented out"

def test_no_stray_config_files():
    assert {p.stem for p in CONFIGS.glob('*.toml')} <= set(SECTIONS)
