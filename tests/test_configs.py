"configs/*.toml hold exactly the defaults of each stage's config dataclass."
import dataclasses, tomllib
from pathlib import Path
import pytest
from rewardbench_nb.core import RunConfig
from rewardbench_nb.cli import all_stages

CONFIGS = Path(__file__).resolve().parents[1]/'configs'
SECTIONS = {'run': RunConfig, **{s.section: s.config for s in all_stages().values()}}

@pytest.mark.parametrize('name', sorted(SECTIONS))
def test_config_file_matches_defaults(name):
    path = CONFIGS/f'{name}.toml'
    assert path.exists(), f'{path} missing: every stage ships its defaults in configs/'
    file = tomllib.loads(path.read_text())
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(SECTIONS[name])}
    assert file == defaults

def test_no_stray_config_files():
    assert {p.stem for p in CONFIGS.glob('*.toml')} <= set(SECTIONS)
