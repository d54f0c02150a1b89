"""Build the documentation site with Sphinx, MyST-NB and the PyData theme, from nbdev's processed notebooks.

    python tools/build_docs.py                 # -> site/index.html  (what `python3 tasks.py docs` runs)
    python tools/build_docs.py --out /tmp/site --proc /tmp/_proc --force

`nbdev-docs` renders these pages with Quarto where Quarto is installed. This script is the glue that feeds the same
processed notebooks to Sphinx instead (why Sphinx: the page `nbs/18_docs.ipynb`):

1. nbdev processes every notebook in `nbs/` into `_proc/`, exactly as `nbdev-docs` does before it calls Quarto
   (`nbdev.serve_drv.main` with nbdev's processors, as `nbdev.serve.proc_nbs` does; Quarto is never called).
2. Each processed notebook is written into a Sphinx source folder under its page name (`00_core.ipynb` -> `core`), with
   Quarto's cell options turned into MyST-NB's cell tags (`echo: false` -> `remove-input`, `include: false` -> the cell
   goes, `output: false` -> `remove-output`, `code-fold` -> `hide-input`), `output: asis` cells (what `show_doc`
   writes) turned into markdown, nbdev's source links into links to the file and line in the repository, and links
   to the hosted docs or to notebooks into links inside the site.
3. The sidebar's groups come from `website.sidebar.contents` in `nbs/_quarto.yml` (Quarto's own sidebar); a notebook
   not listed there is put in an "Other" group. Sphinx writes the site: search, a table of contents per page,
   previous/next links, maths as MathML. Nothing is loaded from the network, at build time or when reading.
4. The build fails when a page would mislead: a markdown cell that announces a picture (`... below:`) with no picture
   after it, or a sentence that ends in `:` with nothing after it (`check_announcements`).
"""
from __future__ import annotations
import argparse, json, os, re, shutil, sys, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import urljoin

import nbformat, yaml

HERE = Path(__file__).resolve().parent
MARKER = '.docs-site'  # written into the output folder; only a folder holding it (or an empty one) is ever replaced

SPHINX_PAGES = {'search', 'genindex', 'py-modindex'}  # names Sphinx gives its own pages

class DocsError(Exception): "A failure to report as one clear message, without a traceback."

# ---------------------------------------------------------------------------------------------------------------------
# 1. nbdev's processing, into `_proc/`, without Quarto

def process_notebooks(cfg, proc:Path, force:bool=False, n_workers:int|None=None, keep_going:bool=False):
    "Run nbdev's docs processors over `cfg.nbs_path` into `proc`; return the notebooks (relative to `nbs_path`), failures, and how many ran."
    import nbdev, nbdev.serve_drv
    from nbdev.doclinks import nbglob
    from nbdev.serve import _proc_file, _rm_stale
    path = Path(cfg.nbs_path)
    nbs = sorted(Path(p).relative_to(path) for p in nbglob(path, as_path=True))
    errors = []
    # The rest mirrors `nbdev.serve.proc_nbs` (which is called by `nbdev-docs` after `_ensure_quarto`).
    files = nbglob(path, func=Path, file_glob='', file_re='')
    for extra in ('_quarto.yml', '_brand.yml'):
        if (path/extra).exists(): files.append(path/extra)
    files.extend(nbglob(path, func=Path, file_glob='_metadata.y*ml', skip_file_re='^[.]'))
    if proc.exists() and (proc/'.git').exists() or (proc/'pyproject.toml').exists() or proc in (path, *path.parents):
        raise DocsError(f'--proc {proc} holds a project or its notebooks; it must be a folder of its own (it gets emptied)')
    chk_mtime = max(cfg.config_file.stat().st_mtime, Path(nbdev.serve.__file__).stat().st_mtime)
    if proc.exists() and (force or proc.stat().st_mtime < chk_mtime): shutil.rmtree(proc)
    proc.mkdir(parents=True, exist_ok=True)
    _rm_stale(proc, path)
    jobs = [o for o in files.map(_proc_file, cache=proc, path=path) if o]
    todo = [o for o in jobs if o[0].suffix == '.ipynb']
    if todo:
        # As `proc_nbs` does: fresh (`spawn`) interpreters, each processing its share of the notebooks one after another
        # (so torch & co. are imported once per worker). One worker is the fastest on 2 cores. It is not waited for at
        # the end: it takes seconds to exit (a full garbage collection per notebook's IPython shell), while pages render.
        ex = ProcessPoolExecutor(max(1, min(n_workers or 1, len(todo))), mp_context=get_context('spawn'))
        try:
            futs = {ex.submit(nbdev.serve_drv.main, (s, d, x)): s for s,d,x in todo}
            for fut in as_completed(futs):
                try: fut.result()
                except Exception as e: errors.append((futs[fut], e))
        finally: ex.shutdown(wait=False)
    if errors:
        for s,_ in errors: (proc/s.relative_to(path)).unlink(missing_ok=True)
        msgs = '\n\n'.join(f'--- {s.relative_to(cfg.config_path)}:\n{type(e).__name__}: {e}' for s,e in sorted(errors))
        err = DocsError(f'nbdev could not process {len(errors)} notebook(s) for the docs:\n\n{msgs}\n\n'
                        'At docs time nbdev runs only the cells that export, import or call show_doc, each without the '
                        'cells between them; a cell that mixes an import with other code (nbdev warns "Found cells '
                        'containing imports and other code") runs without the names those cells define: give imports '
                        'their own cell.')
        if not keep_going: raise err
        print(f'docs build: {err}\n', file=sys.stderr)
        failed = {s.relative_to(path) for s,_ in errors}
        nbs = [o for o in nbs if o not in failed]
    proc.touch()
    return nbs, errors, len(todo)

# ---------------------------------------------------------------------------------------------------------------------
# 2. Processed notebooks -> MyST-NB notebooks

_re_opt = re.compile(r'^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
_re_attrs = re.compile(r'\]\(([^)\s]+)\)\{[^}\n]*\}')                 # `[text](url){target="_blank" ...}`: Quarto attributes
_re_source = re.compile(r'\[source\]\(([^)\s]+)\)(?:\{[^}\n]*\})?')   # nbdev's link to the source of a symbol
_re_link = re.compile(r'(\]\()([^)\s]+)(\))')

def _opt(s:str):
    try: return yaml.safe_load(s)
    except yaml.YAMLError: return s

def cell_options(c) -> dict:
    "Remove the `#| key: value` lines Quarto reads from the top of a code cell, and return them."
    lines, opts = c.source.splitlines(), {}
    while lines and (m := _re_opt.match(lines[0])): opts[m.group(1)] = _opt(m.group(2)); lines.pop(0)
    c.source = '\n'.join(lines).strip('\n')
    return opts

class Page:
    def __init__(self, src:Path, html:Path, title:str, description:str, nb):
        self.src,self.html,self.title,self.description,self.nb = src,html,title,description,nb
    @property
    def docname(self) -> str: return self.html.with_suffix('').as_posix()
    def href(self, other:'Page', frag:str='') -> str:
        return os.path.relpath(other.html, self.html.parent).replace(os.sep, '/') + (f'#{frag}' if frag else '')

def load_page(proc:Path, rel:Path) -> Page:
    "The processed notebook for `nbs/<rel>`, without its frontmatter, and the title, summary and page nbdev gives it."
    from nbdev.config import nbpath2html
    nb = nbformat.read(proc/rel, as_version=4)
    fm = {}
    for i,c in enumerate(nb.cells):
        if c.cell_type == 'raw' and c.source.lstrip().startswith('---'):
            fm = yaml.safe_load(c.source.strip().strip('-')) or {}; del nb.cells[i]; break
    out = fm.get('output-file') or nbpath2html(rel).name
    if Path(out).stem in SPHINX_PAGES: out = f'{Path(out).stem}-page.html'  # `08_search.ipynb` is not Sphinx's search page
    return Page(rel, rel.parent/out, str(fm.get('title') or rel.stem), str(fm.get('description') or ''), nb)

def fix_markdown(md:str, page:Page, pages:dict, doc_base:str) -> str:
    "nbdev's source links as plain links (no Quarto attributes); links to the hosted docs or to notebooks into the site."
    md = _re_source.sub(lambda m: f'<a class="sgn-source" href="{m.group(1)}">source</a>', md)
    md = _re_attrs.sub(r'](\1)', md)
    def link(m):
        target, _, frag = m.group(2).partition('#')
        p = None
        if doc_base and target.startswith(doc_base): p = pages['html'].get(target[len(doc_base):] or 'index.html')
        elif target.endswith('.ipynb') and '://' not in target:
            p = pages['src'].get(os.path.normpath((page.src.parent/target).as_posix()))
        return m.group(0) if p is None else m.group(1) + page.href(p, frag) + m.group(3)
    return _re_link.sub(link, md)

# fastai's import-time `torch.jit.script` FutureWarning: the package filters it now (sparse_gan_nb/__init__.py), but
# outputs saved before that still hold it, with the path of someone's virtual environment
_re_jit_warning = re.compile(r'^[^\n]*FutureWarning: `torch\.jit\.script` is deprecated[^\n]*\n(\s+warnings\.warn\(\n?)?', re.M)

def _drop_known_noise(o):
    "The output without fastai's stale import warning (None when nothing else is left)."
    if o.get('output_type') != 'stream' or o.get('name') != 'stderr': return o
    text = _re_jit_warning.sub('', ''.join(o['text']) if isinstance(o['text'], list) else o['text'])
    if not text.strip(): return None
    o['text'] = text
    return o

def to_myst(page:Page, pages:dict, doc_base:str):
    "The page as MyST-NB reads it: a title cell, Quarto's cell options as MyST-NB tags, `asis` output as markdown."
    head = f'# {page.title}\n'
    if page.description: head += f'\n:::{{container}} description\n{page.description}\n:::\n'
    cells = [nbformat.v4.new_markdown_cell(head)]
    for c in page.nb.cells:
        if c.cell_type == 'markdown':
            if c.source.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
            c.source = fix_markdown(c.source, page, pages, doc_base); cells.append(c); continue
        if c.cell_type != 'code': cells.append(c); continue
        opts = cell_options(c)
        if opts.get('include') is False: continue
        for k in set(c) - {'id', 'cell_type', 'metadata', 'source', 'outputs', 'execution_count'}: del c[k]
        c.metadata.pop('execution', None)
        tags = []
        if opts.get('echo') is False or not c.source.strip(): tags.append('remove-input')
        if opts.get('output') is False: tags.append('remove-output')
        if opts.get('code-fold') in (True, 'true', 'show'): tags.append('hide-input')
        c.outputs = [o for o in map(_drop_known_noise, c.outputs) if o is not None]
        asis = [o for o in c.outputs if opts.get('output') == 'asis' and 'text/markdown' in o.get('data', {})]
        if asis: c.outputs = [o for o in c.outputs if o not in asis]
        if c.outputs or 'remove-input' not in tags:
            c.metadata['tags'] = tags; cells.append(c)
        for o in asis:  # what Quarto does with `output: asis`: the markdown becomes part of the page
            md = re.sub(r'^\s*---\s*\n', '', o['data']['text/markdown'])
            cells.append(nbformat.v4.new_markdown_cell(fix_markdown(md, page, pages, doc_base)))
    page.nb.cells = cells
    page.nb.metadata.pop('widgets', None)
    page.nb.metadata.setdefault('kernelspec', dict(name='python3', display_name='Python 3', language='python'))
    page.nb.metadata.setdefault('language_info', dict(name='python'))  # MyST-NB highlights code by it
    return page.nb

# ---------------------------------------------------------------------------------------------------------------------
# 3. The sidebar's groups, from Quarto's sidebar in nbs/_quarto.yml

def sidebar_groups(nbs_path:Path, pages:list[Page]) -> list[tuple[str|None, list[Page]]]:
    "`website.sidebar.contents` of `_quarto.yml` as (section title or None, pages); unlisted pages go under 'Other'."
    cfg = yaml.safe_load((nbs_path/'_quarto.yml').read_text()) if (nbs_path/'_quarto.yml').exists() else {}
    contents = ((cfg.get('website') or {}).get('sidebar') or {}).get('contents') or []
    by_src = {p.src.as_posix(): p for p in pages}
    groups, used = [], set()
    def take(entries):
        out = []
        for e in entries:
            href = e.get('href') if isinstance(e, dict) else e
            p = by_src.get(os.path.normpath(str(href))) if href else None
            if p is not None and p.src not in used: used.add(p.src); out.append(p)
        return out
    loose = []
    for e in contents if isinstance(contents, list) else []:
        if isinstance(e, dict) and 'section' in e:
            if loose: groups.append((None, loose)); loose = []
            groups.append((str(e['section']), take(e.get('contents') or [])))
        else: loose += take([e])
    if loose: groups.append((None, loose))
    rest = [p for p in pages if p.src not in used]
    if rest: groups.append(('Other', rest))
    return [(t, [p for p in ps if p.html != Path('index.html')]) for t,ps in groups if any(p.html != Path('index.html') for p in ps)]

def toctrees(groups) -> str:
    "The home page's hidden tables of contents, one per group: Sphinx's sidebar, previous/next order and search scope."
    out = []
    for title, ps in groups:
        cap = f':caption: {title}\n' if title else ''
        out.append(f'```{{toctree}}\n:hidden:\n:maxdepth: 1\n{cap}\n' + '\n'.join(p.docname for p in ps) + '\n```')
    return '\n\n'.join(out)

# ---------------------------------------------------------------------------------------------------------------------
# 4. Honest pages: what the prose announces is there

_pic_words = r'(?:figures?|plots?|pictures?|images?|grids?|charts?|bars|curves?|drawings?|diagrams?)'
_re_announce = re.compile(rf'\b{_pic_words}\s+(?:just\s+)?below\b', re.I)

def _has_image(c) -> bool:
    return 'remove-output' not in c.metadata.get('tags', []) and any(
        k.startswith('image/') for o in c.get('outputs', []) for k in o.get('data', {}))

def check_announcements(nb, name:str) -> list[str]:
    "What a page (a notebook as `to_myst` leaves it) promises and does not show: a picture 'below', or a ':' with nothing after."
    errs, cells = [], [c for c in nb.cells if c.cell_type in ('markdown', 'code')]
    for i,c in enumerate(cells):
        if c.cell_type != 'markdown': continue
        text = re.sub(r'```.*?```', '', c.source, flags=re.S).strip()
        after = []
        for o in cells[i+1:]:
            if o.cell_type == 'markdown' and not o.source.lstrip().startswith('<a class="sgn-source"'): break
            after.append(o)
        m = _re_announce.search(text)
        if m and not any(_has_image(o) for o in after):
            errs.append(f'{name}: "{m.group(0)}" announces a picture, but no picture comes before the next text')
        last = c.source.strip().splitlines()[-1].strip() if c.source.strip() else ''
        nxt = cells[i+1] if i+1 < len(cells) else None
        if last.endswith(':') and not last.endswith('::') and not last.startswith(('|', '-', '*', '>', '#')) and (
                nxt is None or nxt.cell_type == 'markdown' and nxt.source.lstrip().startswith('#')):
            errs.append(f'{name}: the text "…{last[-70:]}" ends in ":" with nothing after it on the page')
    return errs

# ---------------------------------------------------------------------------------------------------------------------
# 5. The build

def _prepare_out(out:Path):
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out/MARKER).exists()):
            raise DocsError(f'--out {out} exists and was not made by this script (no {MARKER} in it): '
                            'choose a new folder, or empty this one')
        shutil.rmtree(out)
    out.mkdir(parents=True)

def _repo(cfg) -> str:
    url = str(cfg.get('git_url') or '')
    if not url:
        import tomllib
        pp = cfg.config_path/'pyproject.toml'
        urls = tomllib.loads(pp.read_text()).get('project', {}).get('urls', {}) if pp.exists() else {}
        url = urls.get('Repository', '')
    return url.rstrip('/')

def build(out:Path|None=None, proc:Path|None=None, force:bool=False, n_workers:int|None=None, keep_going:bool=False,
          quiet:bool=False) -> list[Page]:
    "Process the notebooks and write the site to `out`; return its pages. Failures raise `DocsError` (at the end with `keep_going`)."
    from nbdev.config import get_config
    t0 = time.time()
    out, proc = [Path(o).absolute() if o else None for o in (out, proc)]
    cfg = get_config()
    if not cfg.config_file.exists():  # run from outside a project: use the one this script belongs to
        cfg = get_config(HERE.parent)
    if not cfg.config_file.exists(): raise DocsError(f'no nbdev project (pyproject.toml with [tool.nbdev]) here or above {Path.cwd()}')
    os.chdir(cfg.config_path)  # as nbdev-docs does: notebooks' import cells run from the project root
    out, proc = out or cfg.config_path/'site', proc or cfg.config_path/'_proc'
    nbs, failed, n_done = process_notebooks(cfg, proc, force=force, n_workers=n_workers, keep_going=keep_going)
    t1 = time.time()

    pages = []
    for rel in nbs:
        try: pages.append(load_page(proc, rel))
        except Exception as e: raise DocsError(f'could not read the processed notebook {proc/rel}: {type(e).__name__}: {e}')
    seen = {}
    for p in pages:
        if p.html in seen: raise DocsError(f'nbs/{seen[p.html].src} and nbs/{p.src} would both be the page {p.html}: rename one')
        seen[p.html] = p
    title = str(cfg.get('title') or cfg.lib_name)
    if not any(p.html == Path('index.html') for p in pages):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(str(cfg.get('description') or ''))])
        pages.append(Page(Path('index.ipynb'), Path('index.html'), title, '', nb))
    groups = sidebar_groups(Path(cfg.nbs_path), pages)

    src = proc.parent/(proc.name + '_sphinx')
    if src.exists(): shutil.rmtree(src)
    src.mkdir(parents=True)
    for f in proc.rglob('*'):  # pictures and files the notebooks link to
        rel = f.relative_to(proc)
        if f.is_file() and f.suffix not in {'.ipynb', '.yml', '.yaml', '.qmd', '.md', '.css'} and not any(o[0] in '._' for o in rel.parts):
            (src/rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, src/rel)
    doc_base = urljoin(str(cfg.doc_host) + '/', str(cfg.get('doc_baseurl') or '')).rstrip('/') + '/' if cfg.get('doc_host') else ''
    index = {'html': {p.html.as_posix(): p for p in pages}, 'src': {p.src.as_posix(): p for p in pages}}
    repo, branch = _repo(cfg), str(cfg.get('branch') or 'main')
    nbs_rel = Path(cfg.nbs_path).resolve().relative_to(cfg.config_path.resolve())
    notebooks, problems = {}, []
    for p in pages:
        nb = to_myst(p, index, doc_base)
        problems += check_announcements(nb, f'nbs/{p.src.as_posix()}')
        if p.html == Path('index.html'): nb.cells.append(nbformat.v4.new_markdown_cell(toctrees(groups)))
        (src/p.html).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, src/p.html.with_suffix('.ipynb'))
        path = (nbs_rel/p.src).as_posix()
        if (cfg.config_path/path).exists():
            notebooks[p.docname] = dict(path=path, remote=f'{repo}/blob/{branch}/{path}' if repo else '',
                                        local=os.path.relpath(cfg.config_path/path, (out/p.html).parent).replace(os.sep, '/'))
    if problems: raise DocsError('pages whose prose promises what their committed outputs do not show:\n  ' + '\n  '.join(problems))
    meta = dict(title=title, repo=repo, notebooks=notebooks, copyright=str(cfg.get('author') or f'{title} developers'))
    t2 = time.time()

    _prepare_out(out)
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace
    from sphinx.util.console import nocolor
    nocolor()
    os.environ['SGN_DOCS_META'] = json.dumps(meta)
    warn = open(src/'_warnings.txt', 'w+')
    try:
        with docutils_namespace():
            # MyST-NB writes pictures next to Sphinx's output folder: build inside `src`, then move the site to `out`
            app = Sphinx(str(src), str(HERE/'docs'), str(src/'_build'/'html'), str(src/'_build'/'doctrees'), 'html',
                         status=None, warning=warn, freshenv=True)
            app.build()
        out.rmdir(); shutil.move(src/'_build'/'html', out)
    except Exception as e: raise DocsError(f'Sphinx failed: {type(e).__name__}: {e}')
    warn.seek(0); warnings = [l for l in warn.read().splitlines() if 'WARNING' in l or 'ERROR' in l]
    (out/MARKER).write_text('Made by tools/build_docs.py; the whole folder is replaced on every build.\n')
    if warnings: raise DocsError(f'Sphinx warned {len(warnings)} time(s):\n  ' + '\n  '.join(warnings[:40]))
    if failed: raise DocsError(f'{len(failed)} notebook(s) could not be processed (see above): '
                               f'{", ".join(str(s.relative_to(cfg.config_path)) for s,_ in failed)}; the site has the other pages')
    if not quiet:
        import sphinx
        cached = f' (the other {len(nbs) - n_done} were unchanged)' if n_done < len(nbs) else ''
        print(f'docs: nbdev processed {n_done} of {len(nbs)} notebooks{cached} in {t1-t0:.1f}s; '
              f'Sphinx {sphinx.__version__} wrote {len(pages)} pages in {time.time()-t2:.1f}s\n      open {out/"index.html"}')
    return pages

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', type=Path, default=None, help='output folder (default: site/ in the project root)')
    ap.add_argument('--proc', type=Path, default=None, help="nbdev's processed notebooks (default: _proc/ in the project root)")
    ap.add_argument('--force', action='store_true', help='process every notebook again, ignoring the _proc cache')
    ap.add_argument('--workers', type=int, default=None, help="processes that run nbdev's processing (default 1)")
    ap.add_argument('--keep-going', action='store_true', help='build the pages that process, then still fail')
    a = ap.parse_args(argv)
    try: build(a.out, a.proc, force=a.force, n_workers=a.workers, keep_going=a.keep_going)
    except DocsError as e:
        print(f'docs build failed: {e}', file=sys.stderr)
        return 1
    return 0

if __name__ == '__main__': sys.exit(main())
