"""Write README.md from nbs/index.ipynb, as `nbdev-readme` would with Quarto: `python tools/make_readme.py`.

Markdown cells are copied, code cells become fenced Python, pictures are pointed into nbs/, and links to other pages
(`page.html`) to their notebooks, which GitHub renders. The test suite checks that README.md is up to date.
"""
import re, sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]

def page_notebooks(nbs=ROOT/'nbs') -> dict:
    "{page name: notebook path}, with the page named as nbdev names it (and `tools/build_docs.py` too)."
    from nbdev.config import nbpath2html
    return {nbpath2html(p).stem: p.relative_to(ROOT).as_posix() for p in sorted(nbs.glob('*.ipynb'))}

def render(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    parts, pages = [], page_notebooks()
    def link(m):
        if m[1] not in pages: sys.exit(f'{nb_path.name} links to {m[1]}.html, but no notebook in nbs/ makes that page')
        return f']({pages[m[1]]}{m[2] or ""})'
    for c in nbformat.read(nb_path, as_version=4).cells:
        if c.cell_type == 'markdown':
            parts.append(re.sub(r'\]\(([\w-]+)\.html(#[\w-]+)?\)', link, re.sub(r'src="images/', 'src="nbs/images/', c.source)))
        elif not c.source.startswith('#| hide'): parts.append('```python\n' + c.source + '\n```')
    return '\n\n'.join(parts).replace('\n\n\n', '\n\n') + '\n'

if __name__ == '__main__':
    out = ROOT/'README.md'
    out.write_text(render())
    print(f'wrote {out}')
