"""Every number on a results page is read from a file a run wrote: none is typed by hand.

A *results page* is a notebook in `nbs/` (not `nbs/experiments/`) whose source mentions `bench/results/`, and
`nbs/07a_dgl_results.ipynb`. Each is checked on its own (the test is parametrised by page), twice:

**The prose.** The text of every markdown cell, with these parts left out: fenced code blocks, inline code spans (a
number in code quotes the code), URLs, link targets `](...)`, HTML tags, arXiv ids, years (integers 1990–2030),
version numbers (`2.8` after a package name such as fastai, nbdev, torch or Python) and the numbers of headings and
list items. LaTeX maths stays in: on these pages a number in maths is a hyper-parameter (`$\\beta=(0.5, 0.999)$`) or a
derived quantity, and a hyper-parameter belongs in the grid spec or results file the page names, a derived quantity
in a code cell that computes it. Image alt text stays in too. Of what remains, every number written with a decimal
point (or an exponent), and every integer of 100 or more (`200,067` reads as 200067), must equal at the precision it
is written with (`9.30` is any x with |x − 9.30| ≤ 0.005, `125` any x within 0.5) the absolute value of some number
in the files the page reads; a percentage (`94.3 %`) may also be 100 times such a number. The files a page reads are
those under each `bench/results/<name>` its source names (as `bench/results/<name>`, or as the quoted name
`'<name>'` after a `RESULTS` path; `bench/results/papers.json` holds what the papers and the authors' code report),
and the grid specs (`bench/grids/*.toml`), bench scripts (`bench/*.py`) and tests (`tests/*.py`) it names, whose
settings are hyper-parameters. Numbers are read out of csv, json, md, txt, toml and py files as text, by a regex;
pictures are skipped.

**The code.** No code cell may type in the data of a plot or a table: a list, tuple, set or dict literal (nested ones
counted together, as in `pd.DataFrame({'a': [...], 'b': [...]})`) holding 4 or more float literals with a fractional
part fails. Whole floats (masks of 0. and 1.) do not count, and neither does the toy input of an example,
`tensor([[.9, -.1, .5, 0.]])`.

What the check cannot see: integers under 100 (counts of seeds, steps of 250, "3 of 9"); the text code cells print
(a sentence rendered from code is as honest as its code, which review reads); and which number of a file a written
one equals: a page that reads a long `runs.csv` matches most short decimals somewhere, so the check catches a number
no file holds, not one copied from the wrong row.
"""
import ast, bisect, json, re
from pathlib import Path

import pandas as pd, pytest

ROOT = Path(__file__).resolve().parents[1]
NBS, RESULTS, GRIDS, BENCH = ROOT/'nbs', ROOT/'bench'/'results', ROOT/'bench'/'grids', ROOT/'bench'
ALWAYS = ['07a_dgl_results.ipynb']  # rewritten to read bench/results/dgl_*: checked whether or not it names them yet
TEXT_EXTS = {'.csv', '.json', '.md', '.txt', '.toml', '.py'}

def _source(nb:dict) -> str:
    "The source of every cell of `nb` (a dict in nbformat's shape), outputs left out."
    return '\n'.join(c['source'] if isinstance(c['source'], str) else ''.join(c['source']) for c in nb['cells'])

def results_pages() -> list:
    "The notebooks of `nbs/` whose source mentions `bench/results/`, and the ones in `ALWAYS`."
    found = {p.name for p in NBS.glob('*.ipynb') if 'bench/results/' in _source(json.loads(p.read_text()))}
    return sorted(found | {n for n in ALWAYS if (NBS/n).exists()})

# ---------------------------------------------------------------------------------------------------------------------
# The numbers a page writes

_drops = [re.compile(p, re.S | re.M) for p in (
    r'^\s*(```|~~~).*?^\s*\1',                     # fenced code blocks
    r'`[^`\n]*`',                                   # inline code
    r'\]\([^)]*\)',                                 # link and image targets (the alt text stays)
    r'<[^>\n]*>',                                   # HTML tags and their attributes
    r'https?://\S+',                                # URLs
    r'(?i)\barxiv[: ]*\d{4}\.\d{4,5}(v\d+)?|\b\d{4}\.\d{4,5}(v\d+)?\b',  # arXiv ids
    r'(?i)\b(python|fastai|fastcore|nbdev|torch|pytorch|numpy|pandas|sphinx|quarto|myst-nb|cuda|version|v)[ ]?\d+(\.\d+)+',
    r'^\s*\d+[.)](?=\s)|^#+\s*\d+(\.\d+)*\.?(?=\s)',  # the numbers of list items and headings
)]
_num = re.compile(r'(?<![\w.])(?<![A-Za-z]-)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?([eE][-+]?\d+)?(\s?%)?(?![\w.]?\d)')
_units = re.compile(r'[a-zA-Zµ]*')
UNITS = {'', 's', 'ms', 'us', 'µs', 'min', 'h', 'x', 'k', 'M', 'G', 'px', 'B', 'KB', 'MB', 'GB', 'KiB', 'MiB', 'GiB'}

def prose(md:str) -> str:
    "A markdown cell's text without the parts whose numbers are not results (see the module's docstring)."
    for r in _drops: md = r.sub(' ', md)
    return md

def written_numbers(text:str) -> list:
    "(as written, value, tolerance, is a percentage, where) of each number the rule checks in `text`."
    out = []
    for m in _num.finditer(text):
        whole, frac, exp, pct = m.groups()
        if _units.match(text, m.end()).group() not in UNITS: continue    # part of a name: `1277323c`, `3rd`, `64px2`
        if not frac and text[m.end():m.end() + 1] == '.' and text[m.end() + 1:m.end() + 2].isdigit(): continue
        v = float(whole.replace(',', '') + (frac or '') + (exp or ''))
        if not frac and not exp and (v < 100 or (',' not in whole and 1990 <= v <= 2030)): continue
        dec = len(frac) - 1 if frac else 0
        tol = 0.5 * 10.0 ** (-dec + (int(exp[1:]) if exp else 0))
        out.append((m.group(0).strip(), v, tol, bool(pct), m.start()))
    return out

# ---------------------------------------------------------------------------------------------------------------------
# The numbers the files hold

_file_num = re.compile(r'\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?')

def named_files(src:str) -> list:
    "The files a page reads: under each `bench/results/<name>` it names, and the grid specs, bench scripts and tests it names."
    files = []
    for p in sorted(RESULTS.iterdir()):
        if re.search(rf"bench/results/{re.escape(p.name)}\b|['\"]{re.escape(p.name)}['\"]", src):
            files += [p] if p.is_file() else sorted(f for f in p.rglob('*') if f.is_file())
    files += [g for g in sorted(GRIDS.glob('*.toml')) if re.search(rf'\b{re.escape(g.name)}\b', src)]
    files += [f for d in (BENCH, ROOT/'tests') for f in sorted(d.glob('*.py')) if f'{d.name}/{f.name}' in src]
    return [f for f in files if f.suffix in TEXT_EXTS]

def file_numbers(files:list) -> list:
    "Every number in `files`, as text read by a regex, sorted."
    return sorted({float(t) for f in files for t in _file_num.findall(f.read_text(errors='replace'))})

def in_files(v:float, tol:float, pct:bool, nums:list) -> bool:
    "Whether some number of `nums` (or 100 times one, for a percentage) is `v` at the precision it is written with."
    def near(x, t):
        i = bisect.bisect_left(nums, x - t * (1 + 1e-9))
        return i < len(nums) and nums[i] <= x + t * (1 + 1e-9)
    return near(v, tol) or (pct and near(v / 100, tol / 100))

# ---------------------------------------------------------------------------------------------------------------------
# The check

def _floats(node) -> int:
    "How many float literals with a fractional part a literal holds, nested literals included."
    if isinstance(node, ast.Constant): return isinstance(node.value, float) and not node.value.is_integer()
    if isinstance(node, ast.UnaryOp): return _floats(node.operand)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)): return sum(_floats(e) for e in node.elts)
    if isinstance(node, ast.Dict): return sum(_floats(e) for e in node.values)
    return 0

def _is_tensor_call(node) -> bool:
    f = node.func if isinstance(node, ast.Call) else None
    return isinstance(f, ast.Name) and f.id == 'tensor' or isinstance(f, ast.Attribute) and f.attr == 'tensor'

def typed_data(code:str) -> list:
    "The literals of `code` (outermost ones, not a toy `tensor(...)`'s) that hold 4 or more fractional floats."
    code = '\n'.join(l for l in code.splitlines() if not l.lstrip().startswith(('%', '!')))
    try: tree = ast.parse(code)
    except SyntaxError: return []
    found, seen = [], set()
    for node in ast.walk(tree):
        if id(node) in seen: continue
        if _is_tensor_call(node) or isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
            seen |= {id(n) for n in ast.walk(node)}
            if not _is_tensor_call(node) and _floats(node) >= 4: found.append(ast.get_source_segment(code, node)[:80])
    return found

def check_page(nb:dict, name:str) -> list:
    "What is wrong with the notebook `nb` (a dict in nbformat's shape) under the rule: one message per number."
    files = named_files(_source(nb))
    nums = file_numbers(files)
    problems = []
    for i, c in enumerate(nb['cells']):
        src = _source(dict(cells=[c]))
        if c['cell_type'] == 'markdown':
            text = prose(src)
            for tok, v, tol, pct, at in written_numbers(text):
                if in_files(v, tol, pct, nums): continue
                snippet = ' '.join(text[max(0, at - 70):at + 50].split())
                problems.append(f'{name}, markdown cell {i}: {tok!r} is in no file the page reads ("…{snippet}…"). Read it '
                                'from its file under bench/results/ and render the sentence from code (an `#| echo: false` cell '
                                'printing Markdown), put a hyper-parameter in the grid spec the page names, or fix the number.')
        elif c['cell_type'] == 'code':
            for lit in typed_data(src):
                problems.append(f'{name}, code cell {i}: data typed in, {lit!r}. Read it from its file under bench/results/ '
                                '(pd.read_csv, json.loads) instead of typing it.')
    if not files: problems.append(f'{name}: names no file under bench/results/, so none of its numbers is read from one. '
                                  'Read its numbers from the files the runs wrote, and name them.')
    return problems

# ---------------------------------------------------------------------------------------------------------------------
# Tests

@pytest.mark.parametrize('page', results_pages())
def test_every_number_on_a_results_page_is_read_from_a_file(page):
    problems = check_page(json.loads((NBS/page).read_text()), page)
    assert not problems, f'{len(problems)} number(s) typed by hand:\n' + '\n'.join(problems)

def test_the_results_pages_are_found():
    assert {'06b_stu_results.ipynb', '08a_alphagan_results.ipynb', '09_deploy.ipynb', '17_scale.ipynb'} <= set(results_pages())

def _fake(*cells):
    return {'cells': [dict(cell_type=t, source=s) for t, s in cells]}

def test_the_check_reports_a_number_typed_by_hand():
    fid = pd.read_csv(RESULTS/'stu_4000steps'/'table.csv')['FID ↓'].iloc[0].split(' ± ')[0]   # as the table writes it
    nb = _fake(('markdown', '# A page\n> reading `bench/results/stu_4000steps`'),
               ('markdown', f'1. The FID is {fid} here, 987.6543 there, in 2023, from 1,234,567 samples; `99.99` is code.'))
    problems = check_page(nb, 'fake.ipynb')
    assert len(problems) == 2, problems
    assert "'987.6543'" in problems[0] and 'fake.ipynb, markdown cell 1' in problems[0] and '987.6543 there' in problems[0]
    assert "'1,234,567'" in problems[1] and 'render the sentence from code' in problems[1]

def test_the_check_reports_typed_data_and_a_page_reading_nothing():
    nb = _fake(('code', "import pandas as pd\npd.DataFrame({'fid': [12.1, 9.8], 'is': [3.2, 4.5]})"),
               ('code', 'ax.set_xticks([.05, .1, .2])'))
    problems = check_page(nb, 'fake.ipynb')
    assert len(problems) == 2 and 'code cell 0: data typed in' in problems[0] and 'names no file' in problems[1]
    assert typed_data('w = torch.tensor([[.9, -.1, .5, .2]])\nm = [1., 0., 1., 0.]\nfor b in ((.5, .999), (0., .999)): pass') == []

def test_the_written_numbers():
    got = [(t, v) for t, v, *_ in written_numbers(prose(
        'G 67,267 weights at 94.3 % and 2e-4, 0.5 ms, CIFAR-10, cnn-1277323c, 250 steps, 42 runs, 1.15–1.24, '
        'fastai 2.8 in 2022, [link 3.5](https://x.org/a1.5) $\\beta=(0.5, 0.999)$, arXiv:2203.12345, `lr=3e-3`\n'
        '## 2.1 Heading'))]
    assert got == [('67,267', 67267), ('94.3 %', 94.3), ('2e-4', 2e-4), ('0.5', 0.5), ('250', 250), ('1.15', 1.15),
                   ('1.24', 1.24), ('3.5', 3.5), ('0.5', 0.5), ('0.999', 0.999)]
    assert in_files(9.30, 0.005, False, [9.2993]) and not in_files(9.3, 0.05, False, [9.36])
    assert in_files(94.3, 0.05, True, [0.943]) and not in_files(94.3, 0.05, False, [0.943])
