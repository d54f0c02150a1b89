"""The docs site that `tools/build_docs.py` builds without Quarto, page by page, as HTML and in headless Chromium.

The expectations come from the sources, not from the build: the pages from `nbs/` (nbdev's rules: names starting with
`_` or `.` are skipped, `00_core.ipynb` is `core.html`), each page's title and summary from its notebook's `# Title` and
`> summary`, and the API docs each page must show from `sparse_gan_nb/_modidx.py` (every public function or class in a
module's `__all__`, at the anchor nbdev links to, e.g. `core.html#set_seed`).

Chromium (Debian's `chromium`) opens every page once: a copy of the page with a small script added reports what the
browser saw (title, images decoded, styles applied, maths laid out, the text), and the same run saves a 1200x1600
screenshot to `<site>/_screenshots/<page>.png` in pytest's temporary folder, or to `$DOCS_SCREENSHOTS` when it is set.
Without Chromium the browser tests skip; the HTML tests still run.
"""
import ast, base64, io, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat, pytest, yaml
from bs4 import BeautifulSoup
from nbdev.config import nbpath2html

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
CHROMIUM = next((p for p in map(shutil.which, ('chromium', 'chromium-browser', 'google-chrome')) if p), None)
_ansi = re.compile(r'\x1b\[|\[(?:\d{1,3};)+\d{1,3}m|\[0m')
_tb = 'Traceback (most recent call last)'

# ---------------------------------------------------------------------------------------------------------------------
# What the sources say the site must hold

def _expected_pages():
    "Notebooks nbdev documents, with the title, summary and page path each should get."
    pages = []
    for nb_path in sorted(NBS.rglob('*.ipynb')):
        rel = nb_path.relative_to(NBS)
        if any(o[0] in '._' for o in rel.parts): continue
        nb = nbformat.read(nb_path, as_version=4)
        title, desc, out = None, '', None
        for c in nb.cells:
            if c.cell_type == 'raw' and c.source.lstrip().startswith('---'):
                fm = yaml.safe_load(c.source.strip().strip('-')) or {}
                title, desc, out = fm.get('title'), fm.get('description', ''), fm.get('output-file')
                break
            if c.cell_type == 'markdown':
                lines = c.source.strip().splitlines()
                if lines and re.match(r'#\s+\S', lines[0]):
                    title = lines[0].lstrip('#').strip()
                    desc = next((l[1:].strip() for l in lines[1:] if l.startswith('>')), '')
                break
        html = rel.parent/(out or nbpath2html(rel).name)
        pages.append(dict(src=rel.as_posix(), html=html.as_posix(), title=title or rel.stem, description=desc, nb=nb))
    return pages

def _expected_api():
    "For each page: (name, anchor) of every public function or class its module exports, from nbdev's `_modidx.py`."
    modidx = ROOT/'sparse_gan_nb'/'_modidx.py'
    if not modidx.exists(): return {}
    d = ast.literal_eval(modidx.read_text().split('=', 1)[1])
    res = {}
    for mod, syms in d['syms'].items():
        if not syms: continue
        py = ROOT/next(iter(syms.values()))[1]
        all_ = next((set(ast.literal_eval(n.value)) for n in ast.parse(py.read_text()).body if isinstance(n, ast.Assign)
                     and any(getattr(t, 'id', '') == '__all__' for t in n.targets)), set())
        for full,(url,_) in syms.items():
            name = full[len(mod)+1:]
            if '.' in name or name.startswith('_') or name not in all_: continue
            page, _, anchor = url.partition('#')
            res.setdefault(page, []).append((name, anchor))
    return res

PAGES = _expected_pages()
API = _expected_api()
ids = [p['src'] for p in PAGES]

def _norm(s): return re.sub(r'\s+', ' ', re.sub(r'[`*_]', '', str(s))).strip()

# ---------------------------------------------------------------------------------------------------------------------
# The build, once per session

@pytest.fixture(scope='session')
def build(tmp_path_factory):
    "Build the site into a temporary folder, processing every notebook afresh (its own `_proc`), going on past failures."
    d = tmp_path_factory.mktemp('docs')
    t0 = time.time()
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--out', str(d/'site'), '--proc', str(d/'_proc'),
                        '--keep-going'], cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(f'\ndocs built in {time.time()-t0:.1f}s: {d/"site"/"index.html"}')
    return d/'site', r

@pytest.fixture(scope='session')
def site(build):
    if not (build[0]/'index.html').exists(): pytest.fail(f'no site was built:\n{build[1].stderr[-6000:]}')
    return build[0]

def test_docs_build_succeeds(build):
    "Every notebook processes and renders (the other tests check the pages that did)."
    r = build[1]
    assert r.returncode == 0, f'tools/build_docs.py failed (exit {r.returncode}):\n{r.stderr[-8000:]}'

def _soup(site, page):
    assert (site/page['html']).exists(), f'{page["src"]} was not built (see test_docs_build_succeeds)'
    return BeautifulSoup((site/page['html']).read_text(encoding='utf-8'), 'html.parser')

def _links_soup(path):
    "A page parsed for its links and ids only: pictures' data URIs (slow to parse) are left out."
    return BeautifulSoup(re.sub(r'src="data:[^"]*"', 'src=""', path.read_text(encoding='utf-8')), 'html.parser')

def _fixture_project(tmp_path, notebooks:dict):
    "A tiny nbdev project holding `notebooks` ({name: cells}); returns its root."
    proj = tmp_path/'proj'; (proj/'nbs').mkdir(parents=True)
    (proj/'pyproject.toml').write_text('[project]\nname = "docs-fixture"\nversion = "0.0.1"\ndescription = "x"\n\n'
                                        '[tool.nbdev]\nlib_path = "docs_fixture"\nnbs_path = "nbs"\n'
                                        'doc_host = "https://example.org"\ndoc_baseurl = "/docs-fixture"\n')
    for name, cells in notebooks.items(): nbformat.write(nbformat.v4.new_notebook(cells=cells), proj/'nbs'/name)
    return proj

def _build(proj, out):
    return subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--out', str(out)], cwd=proj,
                          capture_output=True, text=True, timeout=300)

def test_build_fails_clearly_on_a_broken_notebook(tmp_path):
    "A notebook whose docs-time cells raise stops the build with exit 1 and a message naming the notebook and cell."
    from nbformat.v4 import new_code_cell as cc, new_markdown_cell as mc
    proj = _fixture_project(tmp_path, {'00_broken.ipynb': [
        cc('#| default_exp broken'), mc('# Broken\n> Fails at docs time'),
        cc('#| export\ndef f(): "A function, so the page has API docs to build"'),
        cc('import json\nundefined_name_for_docs_test')]})  # cells with imports run at docs time
    r = _build(proj, tmp_path/'site')
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'nbs/00_broken.ipynb' in r.stderr and 'undefined_name_for_docs_test' in r.stderr, r.stderr
    assert not (tmp_path/'site'/'broken.html').exists()

def test_renders_quarto_options_and_outputs(tmp_path):
    "Quarto's cell options, each kind of output, attachments, local pictures, maths and links between notebooks."
    from nbformat.v4 import new_code_cell as cc, new_markdown_cell as mc, new_output as out
    from PIL import Image
    buf = io.BytesIO(); Image.new('RGB', (20, 10), (255, 0, 0)).save(buf, 'PNG')
    png = base64.b64encode(buf.getvalue()).decode()
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20"/></svg>'
    md = mc('A ![a](attachment:dot.png) and ![f](pic.png), [the other page](01_other.ipynb#second-part), $$\\sum_i w_i$$')
    md.attachments = {'dot.png': {'image/png': png}}
    disp = lambda mime, v: [out('display_data', data={mime: v, 'text/plain': 'plain-repr'})]
    proj = _fixture_project(tmp_path, {
        '00_fx.ipynb': [cc('#| default_exp fx'), mc('# Fixture page\n> Summary with `code`'),
            cc('#| export\ndef f(a:int=1, # the a\n     ) -> int:\n    "Return `a`."\n    return a'),
            cc('#| echo: false\nprint("src-hidden")', outputs=[out('stream', name='stdout', text='shown-output\n')]),
            cc('#| include: false\nprint("dropped-src")', outputs=[out('stream', name='stdout', text='dropped-output\n')]),
            cc('#| output: false\nprint("kept-src")', outputs=[out('stream', name='stdout', text='hidden-output\n')]),
            cc('#| code-fold: true\n#| code-summary: "Show the code"\nfolded = 1'),
            cc('h()', outputs=disp('text/html', '<table><tr><td>cell-html</td></tr></table>')),
            cc('s()', outputs=disp('image/svg+xml', svg)), cc('p()', outputs=disp('image/png', png)),
            cc('t()', outputs=disp('text/latex', '$\\frac{a}{b}$')), md],
        '01_other.ipynb': [mc('# Other\n> The other page'), mc('## Second part\ntext')]})
    Image.new('RGB', (30, 12), (0, 128, 0)).save(proj/'nbs'/'pic.png')
    r = _build(proj, tmp_path/'site')
    assert r.returncode == 0, r.stderr
    soup = BeautifulSoup((tmp_path/'site'/'fx.html').read_text(encoding='utf-8'), 'html.parser')
    main = soup.find('main'); text = main.get_text()
    assert soup.select_one('.description code').get_text() == 'code'
    assert main.find('h3', id='f') and 'the a' in main.select_one('.cell-asis .highlight').get_text()
    assert 'src-hidden' not in text and 'shown-output' in text
    assert 'dropped-src' not in text and 'dropped-output' not in text
    assert 'kept-src' in text and 'hidden-output' not in text
    fold = main.find('details', class_='code-fold')
    assert fold and fold.summary.get_text() == 'Show the code' and 'folded' in fold.get_text() and not fold.has_attr('open')
    assert main.find('td', string='cell-html') and 'plain-repr' not in text
    srcs = [i['src'][:22] for i in main.find_all('img')]
    assert srcs == ['data:image/svg+xml;bas', 'data:image/png;base64,', 'data:image/png;base64,', 'data:image/png;base64,']
    mathml = soup.find('meta', attrs={'name': 'docs-math'})['content'] == 'mathml'
    assert len(main.find_all('math') if mathml else main.select('code.math-tex')) == 2
    assert main.find('a', string='the other page')['href'] == 'other.html#second-part'
    assert BeautifulSoup((tmp_path/'site'/'other.html').read_text(encoding='utf-8'), 'html.parser').find('h2', id='second-part')

# ---------------------------------------------------------------------------------------------------------------------
# Each page, as HTML

def test_pages_exist_and_sidebar_links_work(site):
    "Every notebook has a page, the home page exists, and every page's sidebar links every page, with working links."
    assert PAGES, 'no notebooks found in nbs/'
    assert (site/'index.html').exists() and (site/'styles.css').exists() and (site/'_static'/'docs.css').exists()
    want = {p['html'] for p in PAGES} | {'index.html'}
    for html in sorted(want):
        page = site/html
        assert page.exists(), f'{html} was not built'
        links = set()
        for a in _links_soup(page).select('nav.sidebar a[href]'):
            target = (page.parent/a['href']).resolve()
            assert target.exists(), f'{html}: sidebar link {a["href"]} points to nothing'
            links.add(target.relative_to(site.resolve()).as_posix())
        assert want <= links, f'{html}: sidebar misses {sorted(want - links)}'

def test_links_inside_the_site_resolve(site):
    "Links between pages (nbdev links backticked names to their API docs) reach an existing page and anchor."
    ids_of = {}
    for page in site.rglob('*.html'):
        for a in _links_soup(page).select('main a[href]'):
            href = a['href']
            if re.match(r'[a-z]+:', href): continue
            target, _, frag = href.partition('#')
            dest = (page.parent/target).resolve() if target else page.resolve()
            assert dest.exists(), f'{page.relative_to(site)}: link {href} points to nothing'
            if frag and dest.suffix == '.html':
                if dest not in ids_of:
                    ids_of[dest] = {e['id'] for e in _links_soup(dest).select('[id]')}
                assert frag in ids_of[dest], f'{page.relative_to(site)}: link {href} has no anchor {frag!r} there'

def test_home_page_lists_every_page(site):
    soup = _links_soup(site/'index.html')
    hrefs = {a['href'] for a in soup.select('main a[href]')} | {a['href'] for a in soup.select('nav.sidebar a[href]')}
    for p in PAGES: assert p['html'] in hrefs, f'index.html does not link {p["html"]}'

@pytest.mark.parametrize('page', PAGES, ids=ids)
def test_page_html(site, page):
    "Title, summary, API docs rendered from show_doc's markdown, embedded pictures, maths, and no error output."
    soup = _soup(site, page)
    assert soup.title.get_text().startswith(page['title']), f'<title> is {soup.title.get_text()!r}'
    assert [h.get_text(strip=True) for h in soup.find_all('h1')] == [page['title']]
    if page['description']:
        shown = soup.select_one('#title-block-header .description').get_text()
        assert '$' in page['description'] or _norm(shown) == _norm(page['description']), f'summary is {shown!r}'
    main = soup.find('main')
    for name, anchor in API.get(page['html'], []):
        h = main.find(id=anchor)
        assert h is not None, f'no API docs for {name} (no element with id={anchor!r})'
        assert h.name in ('h2', 'h3', 'h4') and name in h.get_text(), f'#{anchor} is <{h.name}> {h.get_text()!r}'
        sig = h.find_next('div', class_='highlight')
        assert sig is not None and name in sig.get_text(), f'no rendered signature after the {name} heading'
    for img in main.find_all('img'):
        src = img['src']
        if src.startswith('data:'):
            from PIL import Image
            head, _, data = src.partition(',')
            if 'svg' not in head: Image.open(io.BytesIO(base64.b64decode(data))).verify()
        else: assert (site/page['html']).parent.joinpath(src).exists(), f'picture {src} is missing'
    html = str(soup)
    assert _tb not in html and not soup.select('.cell-output-error'), 'the page shows a Python error'
    assert not _ansi.search(html), 'the page shows ANSI escape codes'
    assert not soup.find('script', src=True), 'the page loads a script (the site must work offline)'
    md = '\n'.join(c.source for c in page['nb'].cells if c.cell_type == 'markdown')
    md = re.sub(r'`[^`\n]*`', '', re.sub(r'```.*?```', '', md, flags=re.S))  # a $ in code (a shell variable) is not maths
    if re.search(r'\$[^$\s][^$]*\$', md):  # maths: MathML, or the TeX source where latex2mathml is not installed
        mathml = soup.find('meta', attrs={'name': 'docs-math'})['content'] == 'mathml'
        assert (main.find('math') if mathml else main.select_one('code.math-tex')), 'the maths is missing'
    for el in main.find_all(['pre', 'code', 'math']): el.decompose()
    text = main.get_text('\n')
    assert '```' not in text and not re.search(r'(?m)^\s*#{1,6} \S', text), 'raw markdown left in the page'

# ---------------------------------------------------------------------------------------------------------------------
# Each page, in headless Chromium

CHECK_JS = r"""<script>
window.addEventListener('load', () => {
  const q = s => [...document.querySelectorAll(s)];
  const shown = e => { const b = e.getBoundingClientRect(); return b.width > 0 && b.height > 0; };
  const nav = document.querySelector('nav.sidebar');
  const r = {
    title: document.title, h1: q('h1').map(e => e.textContent.trim()), text: document.body.innerText,
    imgs: q('img').map(i => ({complete: i.complete, w: i.naturalWidth, h: i.naturalHeight, src: (i.getAttribute('src') || '').slice(0, 40)})),
    sidebar: nav ? getComputedStyle(nav).position : null,
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    math: q('math').map(shown),
    headings: Object.fromEntries(q('main h2[id], main h3[id], main h4[id]').map(e => [e.id, shown(e)])),
  };
  const s = document.createElement('script'); s.type = 'application/json'; s.id = '__docs_check__';
  s.textContent = JSON.stringify(r).replace(/</g, '\\u003c'); document.body.appendChild(s);
});
</script>"""

def _chromium(site, html, shots, tmp):
    "Open a copy of the page with CHECK_JS in Chromium; return (exit code, the script's report, stderr, seconds)."
    page = site/html
    chk = page.with_name(f'.check.{page.name}')
    text = page.read_text(encoding='utf-8')
    i = text.rfind('</body>')
    chk.write_text(text[:i] + CHECK_JS + text[i:], encoding='utf-8')
    png = shots/Path(html).with_suffix('.png'); png.parent.mkdir(parents=True, exist_ok=True)
    udd = tmp/('profile-' + html.replace('/', '_'))
    cmd = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync', '--mute-audio',
           f'--user-data-dir={udd}', '--virtual-time-budget=5000', '--window-size=1200,1600',
           f'--screenshot={png}', '--dump-dom', chk.as_uri()]
    t0 = time.time()
    try: r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    finally: chk.unlink(missing_ok=True)
    el = BeautifulSoup(r.stdout, 'html.parser').find('script', id='__docs_check__')
    return r.returncode, (json.loads(el.string) if el else None), r.stderr[-3000:], time.time() - t0

@pytest.fixture(scope='session')
def browser(site, tmp_path_factory):
    "Every page through Chromium, a few at a time; screenshots land in `<site>/_screenshots` or `$DOCS_SCREENSHOTS`."
    if CHROMIUM is None:
        if os.environ.get('CI'): pytest.fail('CI must run the browser tests, but chromium is not installed (.ci/run installs it)')
        pytest.skip('chromium is not installed (Debian: apt-get install -y chromium)')
    shots = Path(os.environ.get('DOCS_SCREENSHOTS') or site/'_screenshots')
    tmp = tmp_path_factory.mktemp('chromium')
    htmls = sorted(h for h in {p['html'] for p in PAGES} | {'index.html'} if (site/h).exists())
    with ThreadPoolExecutor(3) as ex: res = dict(zip(htmls, ex.map(lambda h: _chromium(site, h, shots, tmp), htmls)))
    print(f'\nscreenshots: {shots}')
    return shots, res

def _check_browser(shots, res, html, title):
    assert html in res, f'{html} was not built (see test_docs_build_succeeds)'
    rc, r, err, _ = res[html]
    assert rc == 0 and r is not None, f'chromium failed on {html} (exit {rc}):\n{err}'
    assert r['title'].startswith(title) and r['h1'] == [title], (r['title'], r['h1'])
    assert len(r['text'].strip()) > 200, 'the page rendered (almost) no text'
    assert _tb not in r['text'] and not _ansi.search(r['text']), 'the page shows a Python error'
    assert r['sidebar'] == 'sticky', 'docs.css was not applied'
    assert r['overflow'] <= 1, f'the page is {r["overflow"]}px wider than the window'
    bad = [i for i in r['imgs'] if not (i['complete'] and i['w'] > 0 and i['h'] > 0)]
    assert not bad, f'pictures that did not load: {bad}'
    assert all(r['math']), 'some maths was not laid out'
    from PIL import Image
    with Image.open(shots/Path(html).with_suffix('.png')) as im:
        assert im.size == (1200, 1600) and len(im.convert('L').getcolors(1 << 16) or range(2)) > 8, 'blank screenshot'
    return r

@pytest.mark.parametrize('page', PAGES, ids=ids)
def test_page_in_chromium(browser, page):
    "The page loads in Chromium with its title, visible API docs, decoded pictures, its styles, and no error text."
    shots, res = browser
    r = _check_browser(shots, res, page['html'], page['title'])
    for name, anchor in API.get(page['html'], []):
        assert r['headings'].get(anchor), f'the API docs heading for {name} (#{anchor}) is not shown'

def test_home_page_in_chromium(browser):
    shots, res = browser
    home = next((p for p in PAGES if p['html'] == 'index.html'), None)
    r = res['index.html'][1]
    assert r is not None, res['index.html'][2]
    import tomllib
    _check_browser(shots, res, 'index.html', home['title'] if home else tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['name'])

