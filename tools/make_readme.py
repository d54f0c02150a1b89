"""Write README.md from nbs/index.ipynb, as `nbdev-readme` would with Quarto: `python tools/make_readme.py`.

Markdown cells are copied, code cells become fenced Python, and pictures are pointed into nbs/. The test suite checks
that README.md is up to date.
"""
import re, sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]

def render(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    parts = []
    for c in nbformat.read(nb_path, as_version=4).cells:
        if c.cell_type == 'markdown': parts.append(re.sub(r'src="images/', 'src="nbs/images/', c.source))
        elif not c.source.startswith('#| hide'): parts.append('```python\n' + c.source + '\n```')
    return '\n\n'.join(parts).replace('\n\n\n', '\n\n') + '\n'

if __name__ == '__main__':
    out = ROOT/'README.md'
    out.write_text(render())
    print(f'wrote {out}')
