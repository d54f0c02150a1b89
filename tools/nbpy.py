"""Convert between notebooks and a plain-text "percent" form, for editing notebooks in a text editor.

    python tools/nbpy.py py2nb scratch/01_data.py nbs/01_data.ipynb   # keeps outputs of unchanged cells
    python tools/nbpy.py nb2py nbs/01_data.ipynb scratch/01_data.py
    nbdev-test nbs/01_data.ipynb --save                        # execute, saving outputs back

In the text form a cell starts with `# %%` (code), `# %% [markdown]` (markdown, each line behind `# `),
or `# %% tags=["parameters"]` (a tagged code cell). `nbs/` stays the source of truth: the text form is scratch.
"""
import json, re, sys
from pathlib import Path
import nbformat

_hdr = re.compile(r'^# %%(?: \[(markdown)\])?(?: tags=(\[.*\]))?\s*$')

def py2cells(text):
    cells, cur = [], None
    for line in text.splitlines():
        m = _hdr.match(line)
        if m:
            cur = dict(kind='markdown' if m.group(1) else 'code', tags=json.loads(m.group(2)) if m.group(2) else [], lines=[])
            cells.append(cur); continue
        if cur is None: continue
        if cur['kind'] == 'markdown': line = line[2:] if line.startswith('# ') else line.lstrip('#')
        cur['lines'].append(line)
    out = []
    for c in cells:
        src = '\n'.join(c['lines']).strip('\n')
        cell = nbformat.v4.new_markdown_cell(src) if c['kind'] == 'markdown' else nbformat.v4.new_code_cell(src)
        if c['tags']: cell.metadata['tags'] = c['tags']
        out.append(cell)
    return out

def py2nb(src, dest):
    cells = py2cells(Path(src).read_text())
    old = {}
    if Path(dest).exists():
        for c in nbformat.read(dest, as_version=4).cells: old[(c.cell_type, c.source)] = c
    for c in cells:
        prev = old.get((c.cell_type, c.source))
        if prev is not None and 'id' in prev: c.id = prev.id  # stable ids keep diffs (and nbdev's cell markers) small
        if c.cell_type == 'code': c.outputs = prev.get('outputs', []) if prev is not None else []
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = dict(kernelspec=dict(display_name='python3', language='python', name='python3'))
    nbformat.write(nb, dest)

def nb2py(src, dest):
    parts = []
    for c in nbformat.read(src, as_version=4).cells:
        tags = c.metadata.get('tags', [])
        if c.cell_type == 'markdown':
            parts.append('# %% [markdown]\n' + '\n'.join(('# ' + l) if l else '#' for l in c.source.splitlines()))
        else: parts.append('# %%' + (f' tags={json.dumps(tags)}' if tags else '') + '\n' + c.source)
    Path(dest).write_text('\n\n'.join(parts) + '\n')

if __name__ == '__main__':
    cmd, *args = sys.argv[1:]
    dict(py2nb=py2nb, nb2py=nb2py)[cmd](*args)
