"""Sphinx settings for the docs site that `tools/build_docs.py` builds (Sphinx + MyST-NB + the PyData theme).

`tools/build_docs.py` writes nbdev's processed notebooks into a source folder and runs Sphinx with this folder as its
configuration folder; what differs per project (title, repository, each page's notebook) comes in `$SGN_DOCS_META`.
Two small additions to Sphinx live here: maths drawn as MathML at build time (latex2mathml; browsers lay it out
natively, so nothing loads from a CDN), and Quarto's heading ids (`set_seed`, `sparsemasks.update`) next to Sphinx's,
so the links nbdev writes (`core.html#set_seed`) reach their API docs.
"""
import json, os, re
from docutils import nodes

_meta = json.loads(os.environ.get('SGN_DOCS_META', '{}'))
project = _meta.get('title', 'docs')
html_title = project
copyright = _meta.get('copyright', '')
extensions = ['myst_nb']
templates_path = ['_templates']
html_static_path = ['_static']
html_css_files = ['sgn.css']
html_theme = 'pydata_sphinx_theme'
html_copy_source = False                 # the page's notebook is linked instead (tools/docs/_templates/notebook-links.html)
html_show_sourcelink = False
html_math_renderer = 'mathml'
html_last_updated_fmt = None
nb_execution_mode = 'off'                # outputs are the committed ones, as under Quarto with nbdev
nb_merge_streams = True
myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence', 'html_image']
myst_all_links_external = True           # links are already the site's (`core.html#set_seed`), made by build_docs.py
myst_dmath_double_inline = True
suppress_warnings = ['myst.header', 'mystnb.unknown_mime_type']
exclude_patterns = ['_build', '**.ipynb_checkpoints']
html_theme_options = {
    'navbar_center': [], 'navbar_end': ['theme-switcher', 'navbar-icon-links'],
    'secondary_sidebar_items': ['page-toc', 'notebook-links'], 'show_toc_level': 2, 'navigation_depth': 2,
    'show_nav_level': 1, 'collapse_navigation': True, 'footer_start': ['copyright'], 'footer_end': ['theme-version'],
    'search_bar_text': 'Search the docs', 'pygments_light_style': 'tango', 'pygments_dark_style': 'monokai',
    'icon_links': [dict(name='Repository', url=_meta['repo'], icon='fa-brands fa-github')] if _meta.get('repo') else [],
}
html_sidebars = {'**': ['sidebar-nav-bs']}

def _tex2mathml(tex:str, display:bool) -> str:
    from latex2mathml.converter import convert
    try: return convert(tex.strip(), display='block' if display else 'inline')
    except Exception as e: raise ValueError(f'latex2mathml cannot draw the maths {tex!r}: {e}') from e

def _visit_math(self, node):
    self.body.append(_tex2mathml(node.astext(), False)); raise nodes.SkipNode

def _visit_displaymath(self, node):
    self.body.append(f'<div class="math-display">{_tex2mathml(node.astext(), True)}</div>'); raise nodes.SkipNode

def pandoc_id(text:str) -> str:
    "Pandoc's (so Quarto's) heading id: lower case, spaces to `-`, only letters, digits, `_`, `-` and `.` kept."
    s = re.sub(r'\s+', '-', re.sub(r'[^\w\s.-]', '', text.strip().lower()))
    return re.sub(r'^[^a-z_]+', '', s) or 'section'

def _quarto_ids(app, doctree):
    "Give each section Quarto's id as well as Sphinx's (the extra id becomes an anchor in the heading)."
    seen = set(doctree.ids)
    for sec in doctree.findall(nodes.section):
        qid = pandoc_id(sec[0].astext()) if sec.children and isinstance(sec[0], nodes.title) else None
        if qid and qid not in seen: sec['ids'].append(qid); seen.add(qid)

def _page_context(app, pagename, templatename, context, doctree):
    context['sgn_notebook'] = _meta.get('notebooks', {}).get(pagename)

def _keep_sidebar(app, pagename, templatename, context, doctree):
    context['suppress_sidebar_toctree'] = lambda **kw: False  # the theme drops the sidebar on the home page otherwise

def setup(app):
    app.add_html_math_renderer('mathml', (_visit_math, None), (_visit_displaymath, None))
    app.connect('doctree-read', _quarto_ids)
    app.connect('html-page-context', _page_context, priority=400)   # before the theme drops empty sidebar items
    app.connect('html-page-context', _keep_sidebar, priority=900)   # after the theme sets its own
