"README.md is made from nbs/index.ipynb (Quarto can't run here, so `tools/make_readme.py` stands in for nbdev-readme)."
import sys
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
from make_readme import render

def test_readme_is_in_step_with_the_index_notebook():
    assert (ROOT/'README.md').read_text() == render(), 'README.md is stale: run python tools/make_readme.py'

def test_readme_starts_with_the_two_commands():
    text = (ROOT/'README.md').read_text()
    assert 'python3 tasks.py demo' in text and 'python3 tasks.py test' in text
    assert 'python3 tasks.py test' in (ROOT/'.ci'/'run').read_text()  # CI runs the README's test command
