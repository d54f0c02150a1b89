"""Build the documentation as a static HTML site, without Quarto.

    python tools/build_docs.py                 # -> site/index.html
    python tools/build_docs.py --out /tmp/site --proc /tmp/_proc --force

`nbdev-docs` is the real docs build where Quarto is installed. This script builds the same pages here, where it is not:

1. nbdev processes every notebook in `nbs/` (recursively; names starting with `_` or `.` are skipped) into `_proc/`,
   as `nbdev-docs` does before it calls Quarto: frontmatter from `# Title` / `> summary`, `show_doc` cells added after
   exported symbols and run, hidden cells dropped, backticked names linked. It calls nbdev's own processors
   (`nbdev.serve_drv.main` with `FilterDefaults`, as `nbdev.serve.proc_nbs` does) but never `_ensure_quarto`, so it
   neither installs nor calls Quarto. Unchanged notebooks are not processed again (`--force` redoes all).
2. nbconvert's `HTMLExporter`, with the template below, renders each processed notebook to `site/<folder>/<page>.html`.
   The page name is nbdev's (`nbs/00_core.ipynb` -> `core.html`, the `output-file` nbdev writes into the frontmatter),
   so the links nbdev writes into the docs (`core.html#set_seed`) work here too. Quarto's directives that nbdev leaves
   in the cells (`echo`, `output`, `include`, `code-fold`) are applied; the cell markup uses Quarto's class names, so
   `nbs/styles.css` (copied as it is) applies here as it does in Quarto's site.
3. Every page gets the notebook's title as `<title>` and `<h1>`, its one-line summary, and a sidebar listing every page.
   `site/index.html` is `nbs/index.ipynb`, or a generated list of all pages while there is none.

Maths: `$...$` and `$$...$$` become MathML at build time when `latex2mathml` is installed (Chromium and Firefox draw
MathML natively, so nothing loads from a CDN); without it the TeX source stays in the page, shown as code. Each page
says which in `<meta name="docs-math" content="mathml|tex">`. Pictures are embedded as data URIs; the site is offline.
"""
from __future__ import annotations
import argparse, html, os, re, shutil, sys, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import urljoin

import nbformat, yaml
from bs4 import BeautifulSoup
from jinja2 import DictLoader, pass_context
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from pygments.formatters import HtmlFormatter

try: from latex2mathml.converter import convert as _tex2mathml
except ImportError: _tex2mathml = None

MARKER = '.docs-site'  # written into the output folder; only a folder holding it (or an empty one) is ever replaced
_SKIP_COPY = {'.ipynb', '.yml', '.yaml', '.qmd', '.md'}

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
# 2. Maths and markdown

def tex2html(tex:str, display:bool=False) -> str:
    "MathML for `tex` when latex2mathml is installed (or can parse it); otherwise the TeX source, shown as code."
    if _tex2mathml is not None:
        try: return _tex2mathml(tex, display='block' if display else 'inline')
        except Exception: pass
    delim = '$$' if display else '$'
    return f'<code class="math-tex{" display" if display else ""}">{html.escape(delim + tex + delim)}</code>'

class DocsRenderer(IPythonRenderer):
    "nbconvert's markdown renderer, with maths turned into MathML instead of being left for MathJax."
    def block_math(self, body): return tex2html(body, display=True)
    def inline_math(self, body): return tex2html(body)
    def latex_environment(self, name, body): return tex2html(f'\\begin{{{name}}}{body}\\end{{{name}}}', display=True)

def _latex_output(s:str) -> str:
    "A `text/latex` output (`$...$` or `$$...$$`), as maths."
    s = s.strip()
    for d in ('$$', '$'):
        if s.startswith(d) and s.endswith(d) and len(s) > 2*len(d): return tex2html(s[len(d):-len(d)], display=d == '$$')
    return tex2html(s, display=True)

def md_inline(s:str) -> str:
    "One line of markdown (a page's summary) as inline HTML."
    return re.sub(r'^\s*<p>|</p>\s*$', '', MarkdownWithMath(renderer=DocsRenderer(escape=False, exclude_anchor_links=True)).render(s))

class DocsExporter(HTMLExporter):
    "`HTMLExporter` whose markdown filter renders maths offline."
    @pass_context
    def markdown2html(self, context, source):
        cell = context.get('cell', {})
        renderer = DocsRenderer(escape=False, attachments=cell.get('attachments', {}), embed_images=True,
                                path=context.get('resources', {}).get('metadata', {}).get('path', ''),
                                exclude_anchor_links=True)
        return MarkdownWithMath(renderer=renderer).render(source)

# ---------------------------------------------------------------------------------------------------------------------
# 3. The page template: nbconvert's cell dispatch (display priority, filters), Quarto's class names

TEMPLATE = r"""{%- extends 'display_priority.j2' -%}
{%- block header -%}
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tools/build_docs.py (nbdev processors + nbconvert HTMLExporter)">
<meta name="docs-math" content="{{ resources.docs.math }}">
<title>{{ resources.docs.title | escape_html }} | {{ resources.docs.site_title | escape_html }}</title>
<link rel="stylesheet" href="{{ resources.docs.root }}_static/docs.css">
<link rel="stylesheet" href="{{ resources.docs.root }}styles.css">
</head>
<body>
<header class="site-header"><a href="{{ resources.docs.root }}index.html">{{ resources.docs.site_title | escape_html }}</a></header>
<div class="layout">
<nav class="sidebar" aria-label="Pages">
{{ resources.docs.nav }}
</nav>
<main class="content" id="quarto-document-content">
<header id="title-block-header">
<h1 class="title">{{ resources.docs.title | escape_html }}</h1>
{%- if resources.docs.description %}
<div class="description"><p>{{ resources.docs.description | md_inline }}</p></div>
{%- endif %}
</header>
{%- endblock header -%}

{%- block body_loop -%}
{{ super() }}
{{ resources.docs.extra }}
{%- endblock body_loop -%}

{% block codecell %}
{%- set d = cell.metadata.get('docs', {}) -%}
<div class="cell{% if d.asis %} cell-asis{% endif %}">
{{ super() }}
</div>
{%- endblock codecell %}

{% block input_group %}
{%- if not cell.metadata.get('docs', {}).hide_input %}{{ super() }}{% endif -%}
{%- endblock input_group %}
{% block input %}
{%- set d = cell.metadata.get('docs', {}) -%}
{%- if d.fold %}<details class="code-fold"{% if d.fold == 'show' %} open{% endif %}><summary>{{ d.summary | escape_html }}</summary>{% endif -%}
<div class="sourceCode cell-code">{{ cell.source | highlight_code(metadata=cell.metadata) }}</div>
{%- if d.fold %}</details>{% endif -%}
{%- endblock input %}

{% block execute_result -%}
{% block data_priority scoped %}{{ super() }}{% endblock data_priority %}
{%- endblock execute_result %}
{% block stream_stdout -%}
<div class="cell-output cell-output-stdout"><pre><code>{{ output.text | ansi2html }}</code></pre></div>
{%- endblock stream_stdout %}
{% block stream_stderr -%}
<div class="cell-output cell-output-stderr"><pre><code>{{ output.text | ansi2html }}</code></pre></div>
{%- endblock stream_stderr %}
{% block stream_stdin %}{% endblock stream_stdin %}
{% block error -%}
<div class="cell-output cell-output-error"><pre><code>{{ super() }}</code></pre></div>
{%- endblock error %}
{% block traceback_line %}{{ line | ansi2html }}
{% endblock traceback_line %}

{% block data_text -%}
<div class="cell-output cell-output-display"><pre><code>{{ output.data['text/plain'] | ansi2html }}</code></pre></div>
{%- endblock data_text %}
{% block data_html -%}
<div class="cell-output cell-output-display">{{ output.data['text/html'] }}</div>
{%- endblock data_html %}
{% block data_markdown -%}
{%- if cell.metadata.get('docs', {}).asis -%}
{{ output.data['text/markdown'] | markdown2html }}
{%- else -%}
<div class="cell-output cell-output-display">{{ output.data['text/markdown'] | markdown2html }}</div>
{%- endif -%}
{%- endblock data_markdown %}
{% block data_latex -%}
<div class="cell-output cell-output-display">{{ output.data['text/latex'] | latex_output }}</div>
{%- endblock data_latex %}
{% block data_png -%}
<div class="cell-output cell-output-display"><img alt="" src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}"
{%- set w = output | get_metadata('width', 'image/png') %}{% if w is not none %} width="{{ w }}"{% endif %}
{%- set h = output | get_metadata('height', 'image/png') %}{% if h is not none %} height="{{ h }}"{% endif %}></div>
{%- endblock data_png %}
{% block data_jpg -%}
<div class="cell-output cell-output-display"><img alt="" src="data:image/jpeg;base64,{{ output.data['image/jpeg'] | escape_html }}"
{%- set w = output | get_metadata('width', 'image/jpeg') %}{% if w is not none %} width="{{ w }}"{% endif %}
{%- set h = output | get_metadata('height', 'image/jpeg') %}{% if h is not none %} height="{{ h }}"{% endif %}></div>
{%- endblock data_jpg %}
{% block data_svg -%}
<div class="cell-output cell-output-display"><img alt="" src="data:image/svg+xml;base64,{{ output.data['image/svg+xml'] | text_base64 }}"></div>
{%- endblock data_svg %}
{% block data_javascript %}{% endblock data_javascript %}
{% block data_widget_view %}{% endblock data_widget_view %}

{% block markdowncell -%}
<div class="cell-markdown">
{{ cell.source | markdown2html }}
</div>
{%- endblock markdowncell %}
{% block rawcell -%}
{%- if cell.metadata.get('raw_mimetype', '').lower() == 'text/html' %}{{ cell.source }}{% endif -%}
{%- endblock rawcell %}
{% block unknowncell %}{% endblock unknowncell %}

{%- block footer %}
</main>
</div>
</body>
</html>
{% endblock footer -%}
"""

CSS = """
:root { --sidebar-w: 17rem; --fg: #212529; --muted: #6c757d; --accent: #2780e3; --code-bg: #f7f7f9; --border: #dee2e6; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
.site-header { background: var(--accent); padding: .6rem 1.2rem; }
.site-header a { color: #fff; font-weight: 600; font-size: 1.15rem; }
.layout { display: flex; align-items: flex-start; }
nav.sidebar { position: sticky; top: 0; width: var(--sidebar-w); flex: none; max-height: 100vh; overflow-y: auto;
  padding: 1rem .8rem 2rem 1.2rem; font-size: .92rem; border-right: 1px solid var(--border); }
nav.sidebar ul { list-style: none; margin: 0; padding: 0; }
nav.sidebar li a { display: block; padding: .22rem .5rem; border-radius: .25rem; color: var(--fg); }
nav.sidebar li a:hover { background: #eef4fc; text-decoration: none; }
nav.sidebar li a[aria-current="page"] { background: #e2eefb; color: var(--accent); font-weight: 600; }
nav.sidebar .section { margin: .9rem 0 .25rem .5rem; font-weight: 600; color: var(--muted); }
main.content { flex: 1; min-width: 0; max-width: 60rem; padding: 1.2rem 2.2rem 4rem; }
#title-block-header { margin-bottom: 1.5rem; }
h1.title { margin: .3rem 0 .2rem; font-size: 2.2rem; }
div.description p { margin: 0; }
h2, h3, h4 { margin: 1.6rem 0 .6rem; line-height: 1.25; } h2 { border-bottom: 1px solid var(--border); padding-bottom: .25rem; }
.anchor-link { visibility: hidden; margin-left: .35rem; color: var(--muted); font-weight: normal; }
h1:hover .anchor-link, h2:hover .anchor-link, h3:hover .anchor-link, h4:hover .anchor-link { visibility: visible; }
hr { border: 0; border-top: 1px solid var(--border); margin: 1.8rem 0 .4rem; }
code { font-family: SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: .875em; }
:not(pre) > code { background: var(--code-bg); padding: .1rem .3rem; border-radius: .2rem; color: #9753b8; }
pre { margin: 0; padding: .6rem .8rem; overflow-x: auto; line-height: 1.4; font-size: .875rem; }
.sourceCode { background: var(--code-bg); border: 1px solid #eee; border-radius: .25rem; margin: .6rem 0 0; }
.sourceCode pre, .highlight pre { background: none; }
.cell { margin: 0 0 1rem; }
.cell-output { margin-top: .25rem; }
.cell-output-stderr pre { color: #a94442; }
.cell-output-display, .cell-markdown { overflow-x: auto; }  /* a wide table scrolls in place, not the page */
.cell-output-display img { max-width: 100%; height: auto; }
.cell-output-display table, .cell-markdown table, .cell-asis table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid var(--border); padding: .3rem .6rem; text-align: left; vertical-align: top; }
thead th { background: #f1f3f5; }
details.code-fold > summary { cursor: pointer; color: var(--muted); font-size: .9rem; margin-top: .6rem; }
code.math-tex { color: var(--fg); }
code.math-tex.display { display: block; margin: .6rem 0; padding: .4rem .6rem; }
math[display="block"] { margin: .8rem 0; font-size: 1.1em; }
.page-list dt { margin-top: .6rem; font-weight: 600; } .page-list dd { margin: .1rem 0 0 1rem; color: var(--muted); }
@media (max-width: 800px) { .layout { display: block; } nav.sidebar { position: static; width: auto; max-height: none;
  border-right: 0; border-bottom: 1px solid var(--border); } main.content { padding: 1rem; } }
"""

# ---------------------------------------------------------------------------------------------------------------------
# 4. Pages: frontmatter, Quarto directives, sidebar, links

_CELL_KEYS = {'id', 'cell_type', 'metadata', 'source', 'outputs', 'execution_count', 'attachments'}
_re_dir = re.compile(r'^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')

def _yaml_val(s:str):
    try: return yaml.safe_load(s)
    except yaml.YAMLError: return s

def split_frontmatter(nb) -> dict:
    "Remove the YAML frontmatter cell nbdev writes first into a processed notebook, and return it."
    for i,c in enumerate(nb.cells):
        if c.cell_type == 'raw' and c.source.lstrip().startswith('---'):
            body = c.source.strip().strip('-')
            del nb.cells[i]
            return yaml.safe_load(body) or {}
    return {}

def apply_directives(nb):
    "Apply the Quarto cell options nbdev leaves in processed cells (`#| echo: false`, ...), then drop the lines."
    keep = []
    for c in nb.cells:
        if c.cell_type != 'code': keep.append(c); continue
        lines, opts = c.source.splitlines(), {}
        while lines and (m := _re_dir.match(lines[0])): opts[m.group(1)] = _yaml_val(m.group(2)); lines.pop(0)
        c.source = '\n'.join(lines).strip('\n')
        if opts.get('include') is False: continue
        d = {}
        if opts.get('echo') is False or not c.source.strip(): d['hide_input'] = True
        if opts.get('output') is False: c.outputs = []
        if opts.get('output') == 'asis': d['asis'] = True
        fold = opts.get('code-fold')
        if fold in (True, 'true', 'show'): d.update(fold='show' if fold == 'show' else 'hide', summary=opts.get('code-summary', 'Code'))
        c.metadata['docs'] = d
        if d.get('hide_input') and not c.outputs: continue
        keep.append(c)
    for c in keep:  # nbconvert validates against nbformat's schema, which nbdev's processed cells don't quite meet
        for k in set(c) - _CELL_KEYS: del c[k]
        c.metadata.pop('execution', None)  # CaptureShell's timings are numbers where the schema wants strings
    nb.cells = keep

def _slug(text:str) -> str:
    "Pandoc's (so Quarto's) heading id: lower case, spaces to `-`, only letters, digits, `_`, `-` and `.` kept."
    s = re.sub(r'[^\w\s.-]', '', text.strip().lower())
    s = re.sub(r'\s+', '-', s)
    return re.sub(r'^[^a-z_]+', '', s) or 'section'

class Page:
    def __init__(self, src:Path, html:Path, title:str, description:str, nb=None):
        self.src,self.html,self.title,self.description,self.nb = src,html,title,description,nb
    @property
    def root(self) -> str: return '../' * (len(self.html.parts) - 1)
    def href(self, other:'Page') -> str: return self.root + other.html.as_posix()

def load_page(proc:Path, rel:Path) -> Page:
    "Read the processed notebook for `nbs/<rel>` and work out its title, summary and page path."
    from nbdev.config import nbpath2html
    nb = nbformat.read(proc/rel, as_version=4)
    fm = split_frontmatter(nb)
    out = fm.get('output-file') or nbpath2html(rel).name
    title = str(fm.get('title') or rel.stem)
    return Page(rel, rel.parent/out, title, str(fm.get('description') or ''), nb)

def nav_html(pages:list[Page], cur:Page|None, root:str) -> str:
    "The sidebar: every page, pages at the top first (the home page leading), then each folder as a section."
    def item(p):
        cur_attr = ' aria-current="page"' if p is cur else ''
        return f'<li><a href="{root}{p.html.as_posix()}"{cur_attr}>{html.escape(p.title)}</a></li>'
    out, folder = ['<ul>'], None
    for p in pages:
        f = p.html.parent.as_posix()
        if f != folder and f != '.':
            out.append(f'</ul><div class="section">{html.escape(_section(f))}</div><ul>')
        folder = f
        out.append(item(p))
    out.append('</ul>')
    return '\n'.join(out)

def _section(folder:str) -> str: return folder.replace('_', ' ').replace('/', ' / ').capitalize()

def _order(p:Page): return (len(p.html.parts) > 1, p.html.parent.as_posix(), p.html.stem != 'index', p.src.name)

def fix_html(text:str, page:Page, pages:list[Page], doc_base:str) -> str:
    "Give headings Quarto's ids and anchor links; make links to the hosted docs or to notebooks point into this site."
    blobs = []  # pictures' data URIs are set aside while the page is parsed, which makes parsing several times faster
    def stash(m): blobs.append(m.group(0)); return f'src="data:,docs-blob-{len(blobs)-1}"'
    soup = BeautifulSoup(re.sub(r'src="data:[^"]{256,}"', stash, text), 'html.parser')
    main = soup.find('main')
    seen = {'title-block-header'}
    hs = main.find_all(['h2', 'h3', 'h4', 'h5', 'h6'])
    api = [h for h in hs if h.find_parent(class_='cell-asis')]  # show_doc's headings get their plain ids first, so that
    for h in api + [h for h in hs if all(h is not o for o in api)]:  # nbdev's links (`metrics.html#fid`) reach the API docs
        hid = h.get('id') or _slug(h.get_text())
        base, n = hid, 1
        while hid in seen: hid = f'{base}-{n}'; n += 1
        seen.add(hid); h['id'] = hid
        a = soup.new_tag('a', href=f'#{hid}', attrs={'class': 'anchor-link', 'aria-hidden': 'true'}); a.string = '¶'
        h.append(a)
    by_html = {p.html.as_posix(): p for p in pages}
    by_src = {p.src.as_posix(): p for p in pages}
    for a in main.find_all('a', href=True):
        href = a['href']
        target, _, frag = href.partition('#')
        p = None
        if doc_base and target.startswith(doc_base):
            p = by_html.get(target[len(doc_base):] or 'index.html')
        elif target.endswith('.ipynb') and '://' not in target:
            p = by_src.get(os.path.normpath((page.src.parent/target).as_posix()))
        if p is not None: a['href'] = page.href(p) + (f'#{frag}' if frag else '')
    return re.sub(r'src="data:,docs-blob-(\d+)"', lambda m: blobs[int(m.group(1))], str(soup))

def index_extra(pages:list[Page], home:Page) -> str:
    "The generated home page's list of pages with their summaries."
    out, folder = ['<dl class="page-list">'], None
    for p in pages:
        if p is home: continue
        f = p.html.parent.as_posix()
        if f != folder and f != '.': out.append(f'</dl><h2>{html.escape(_section(f))}</h2><dl class="page-list">')
        folder = f
        out.append(f'<dt><a href="{home.href(p)}">{html.escape(p.title)}</a></dt><dd>{md_inline(p.description)}</dd>')
    out.append('</dl>')
    return '\n'.join(out)

# ---------------------------------------------------------------------------------------------------------------------
# 5. The build

def _prepare_out(out:Path):
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out/MARKER).exists()):
            raise DocsError(f'--out {out} exists and was not made by this script (no {MARKER} in it): '
                            'choose a new folder, or empty this one')
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out/MARKER).write_text('Made by tools/build_docs.py; the whole folder is replaced on every build.\n')

def build(out:Path|None=None, proc:Path|None=None, force:bool=False, n_workers:int|None=None, keep_going:bool=False,
          quiet:bool=False) -> list[Page]:
    "Process the notebooks and write the site to `out`; return its pages. Failures raise `DocsError` (at the end with `keep_going`)."
    from nbdev.config import get_config
    t0 = time.time()
    out, proc = [Path(o).absolute() if o else None for o in (out, proc)]
    cfg = get_config()
    if not cfg.config_file.exists():  # run from outside a project: use the one this script belongs to
        cfg = get_config(Path(__file__).resolve().parents[1])
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
    site_title = str(cfg.get('title') or cfg.lib_name)
    home = next((p for p in pages if p.html == Path('index.html')), None)
    if home is None:
        home = Page(Path('index.ipynb'), Path('index.html'), site_title, str(cfg.get('description') or ''), None)
        pages.append(home)
    pages.sort(key=_order)

    _prepare_out(out)
    (out/'_static').mkdir()
    (out/'_static'/'docs.css').write_text(CSS + HtmlFormatter(style='default').get_style_defs('.highlight'))
    for f in proc.rglob('*'):  # styles.css and any pictures or files the notebooks link to
        rel = f.relative_to(proc)
        if f.is_file() and f.suffix not in _SKIP_COPY and not any(o[0] in '._' for o in rel.parts):
            (out/rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, out/rel)
    if not (out/'styles.css').exists(): (out/'styles.css').write_text('')

    exp = DocsExporter(extra_loaders=[DictLoader({'docs.html.j2': TEMPLATE})], template_name='lab',
                       template_file='docs.html.j2', exclude_input_prompt=True, exclude_output_prompt=True,
                       filters={'latex_output': _latex_output, 'md_inline': md_inline})
    # nbdev links symbols to the hosted docs (`<doc_host><doc_baseurl>/core.html#set_seed`): those links are kept in this site
    doc_base = urljoin(str(cfg.doc_host) + '/', str(cfg.get('doc_baseurl') or '')).rstrip('/') + '/' if cfg.get('doc_host') else ''
    errors = []
    for p in pages:
        nb = p.nb if p.nb is not None else nbformat.v4.new_notebook()
        if p.nb is not None: apply_directives(nb)
        res = {'metadata': {'name': p.html.stem, 'path': str((proc/p.src).parent)},
               'docs': dict(title=p.title, description=p.description, site_title=site_title, root=p.root,
                            nav=nav_html(pages, p, p.root), math='mathml' if _tex2mathml else 'tex',
                            extra=index_extra(pages, p) if p.nb is None else '')}
        try: body,_ = exp.from_notebook_node(nb, resources=res)
        except Exception as e: errors.append(f'--- nbs/{p.src}: {type(e).__name__}: ' + '\n'.join(str(e).splitlines()[:4])); continue
        dest = out/p.html
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(fix_html(body, p, pages, doc_base), encoding='utf-8')
    if errors: raise DocsError('could not render these notebooks to HTML:\n' + '\n'.join(errors))
    if failed: raise DocsError(f'{len(failed)} notebook(s) could not be processed (see above): '
                               f'{", ".join(str(s.relative_to(cfg.config_path)) for s,_ in failed)}; the site has the other pages')
    if not quiet:
        maths = 'MathML' if _tex2mathml else 'TeX source (pip install latex2mathml for MathML)'
        cached = f' (the other {len(nbs) - n_done} were unchanged)' if n_done < len(nbs) else ''
        print(f'docs: processed {n_done} of {len(nbs)} notebooks{cached} in {t1-t0:.1f}s, '
              f'wrote {len(pages)} pages in {time.time()-t1:.1f}s; '
              f'maths as {maths}\n      open {out/"index.html"}')
    return pages

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', type=Path, default=None, help='output folder (default: site/ in the project root)')
    ap.add_argument('--proc', type=Path, default=None, help="nbdev's processed notebooks (default: _proc/ in the project root)")
    ap.add_argument('--force', action='store_true', help='process every notebook again, ignoring the _proc cache')
    ap.add_argument('--workers', type=int, default=None, help='processes that run nbdev\'s processing (default 1)')
    ap.add_argument('--keep-going', action='store_true', help='build the pages that process, then still fail')
    a = ap.parse_args(argv)
    try: build(a.out, a.proc, force=a.force, n_workers=a.workers, keep_going=a.keep_going)
    except DocsError as e:
        print(f'docs build failed: {e}', file=sys.stderr)
        return 1
    return 0

if __name__ == '__main__': sys.exit(main())
