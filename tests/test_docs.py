"""The docs site that `tools/build_docs.py` builds (Sphinx + MyST-NB + PyData theme), as HTML and in headless Chromium.

The expectations come from the sources, not from the build: the pages from `nbs/` (nbdev's rules: names starting with
`_` or `.` are skipped, `00_core.ipynb` is `core.html`), each page's title from its notebook's `# Title`, the sidebar's
groups from `nbs/_quarto.yml`, and the API docs each page must show from `sparse_gan_nb/_modidx.py` (every public
function or class in a module's `__all__`, at the anchor nbdev links to, e.g. `core.html#set_seed`).

Chromium (Debian's `chromium`) opens every page once: a copy of the page with a small script added reports what the
browser saw (title, pictures decoded, table of contents, previous/next links, the text), and the same run saves a
1200x1600 screenshot to `<site>/_screenshots/<page>.png` in pytest's temporary folder, or to `$DOCS_SCREENSHOTS` when
it is set. One more run types "ERK" into the search box of the home page and reads the results page.
Without Chromium the browser tests skip (in CI they fail); the HTML tests still run.
"""
import ast, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat, pytest, yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
sys.path.insert(0, str(ROOT/'tools'))
import build_docs  # noqa: E402  (its page naming and sidebar grouping are what the site must follow)

CHROMIUM = next((p for p in map(shutil.which, ('chromium', 'chromium-browser', 'google-chrome')) if p), None)
_ansi = re.compile(r'\x1b\[|\[(?:\d{1,3};)+\d{1,3}m|\[0m')
# Text no page may show: Quarto attributes left as text, a table that fell apart, errors, warnings, temporary paths
# (the first two are looked for in the prose, outside code and outputs, where a printed markdown table is fine)
PROSE_BAD = {'raw Quarto attributes': re.compile(r'\{target='), 'a broken table': re.compile(r'\|\s*-{3,}\s*\|')}
BAD_TEXT = {'a traceback': re.compile(r'Traceback \(most recent call last\)'),
            'warning text': re.compile(r'\b\w*Warning: |\[IPKernelApp\] WARNING'),
            'a temporary run folder or a virtual environment': re.compile(r'sgn-run-|\.venv/lib/'),
            }
OUTPUT_BAD = {'a numpy scalar repr': re.compile(r'np\.float\d+\(|np\.int\d+\(')}  # in outputs (code may build one)

# ---------------------------------------------------------------------------------------------------------------------
# What the sources say the site must hold

def _expected_pages():
    "Notebooks nbdev documents, with the title and page path each should get."
    from nbdev.config import nbpath2html
    pages = []
    for nb_path in sorted(NBS.rglob('*.ipynb')):
        rel = nb_path.relative_to(NBS)
        if any(o[0] in '._' for o in rel.parts): continue
        nb = nbformat.read(nb_path, as_version=4)
        title = next((l.lstrip('#').strip() for c in nb.cells if c.cell_type == 'markdown'
                      for l in c.source.strip().splitlines()[:1] if re.match(r'#\s+\S', l)), rel.stem)
        html = nbpath2html(rel)
        if html.stem in build_docs.SPHINX_PAGES: html = html.with_name(f'{html.stem}-page.html')
        pages.append(dict(src=rel.as_posix(), html=html.as_posix(), title=title, nb=nb))
    return pages

def _expected_api():
    "For each page: (name, anchor) of every public function or class its module exports, from nbdev's `_modidx.py`."
    modidx = ROOT/'sparse_gan_nb'/'_modidx.py'
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
            if Path(page).stem in build_docs.SPHINX_PAGES: page = f'{Path(page).stem}-page.html'
            res.setdefault(page, []).append((name, anchor))
    return res

PAGES = _expected_pages()
API = _expected_api()
ids = [p['src'] for p in PAGES]
HTMLS = sorted({p['html'] for p in PAGES} | {'index.html'})

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
    "Every notebook processes and renders without a Sphinx warning (the other tests check the pages that did)."
    r = build[1]
    assert r.returncode == 0, f'tools/build_docs.py failed (exit {r.returncode}):\n{r.stderr[-8000:]}'

def _soup(path:Path):
    assert path.exists(), f'{path.name} was not built (see test_docs_build_succeeds)'
    return BeautifulSoup(path.read_text(encoding='utf-8'), 'html.parser')

# ---------------------------------------------------------------------------------------------------------------------
# Small projects that pin down the glue: Quarto's cell options, links, maths, and the honesty checks

def _fixture_project(tmp_path, notebooks:dict, quarto:str|None=None):
    "A tiny nbdev project holding `notebooks` ({name: cells}); returns its root."
    proj = tmp_path/'proj'; (proj/'nbs').mkdir(parents=True)
    (proj/'pyproject.toml').write_text('[project]\nname = "docs-fixture"\nversion = "0.0.1"\ndescription = "x"\n'
                                        '[project.urls]\nRepository = "https://example.org/fixture/repo"\n\n'
                                        '[tool.nbdev]\nlib_path = "docs_fixture"\nnbs_path = "nbs"\n'
                                        'doc_host = "https://example.org"\ndoc_baseurl = "/docs-fixture"\n')
    if quarto: (proj/'nbs'/'_quarto.yml').write_text(quarto)
    for name, cells in notebooks.items(): nbformat.write(nbformat.v4.new_notebook(cells=cells), proj/'nbs'/name)
    return proj

def _build(proj, out):
    return subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--out', str(out)], cwd=proj,
                          capture_output=True, text=True, timeout=300)

def test_build_fails_clearly_on_a_broken_notebook_or_a_missing_picture(tmp_path):
    "A notebook whose docs-time cells raise, or whose prose announces a picture that is not there, stops the build."
    from nbformat.v4 import new_code_cell as cc, new_markdown_cell as mc
    proj = _fixture_project(tmp_path, {'00_broken.ipynb': [
        cc('#| default_exp broken'), mc('# Broken\n> Fails at docs time'),
        cc('#| export\ndef f(): "A function, so the page has API docs to build"'),
        cc('import json\nundefined_name_for_docs_test')]})  # cells with imports run at docs time
    r = _build(proj, tmp_path/'site')
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'nbs/00_broken.ipynb' in r.stderr and 'undefined_name_for_docs_test' in r.stderr, r.stderr
    proj = _fixture_project(tmp_path/'b', {'00_pic.ipynb': [
        mc('# Pictures\n> Promised'), mc('The loss curves below show it.'), cc('x = 1'),
        mc('## Next\nThe numbers:'), mc('## After')]})
    r = _build(proj, tmp_path/'site2')
    assert r.returncode == 1, r.stdout + r.stderr
    assert '"curves below" announces a picture' in r.stderr and '"…The numbers:" ends in ":"' in r.stderr, r.stderr

def test_renders_quarto_options_links_maths_and_groups(tmp_path):
    "Quarto's cell options, show_doc's source links, links between notebooks, maths, and the sidebar from _quarto.yml."
    from nbformat.v4 import new_code_cell as cc, new_markdown_cell as mc, new_output as out
    quarto = ('website:\n  sidebar:\n    contents:\n      - index.ipynb\n      - section: Group A\n'
              '        contents: [01_other.ipynb, 05_missing.ipynb]\n')
    proj = _fixture_project(tmp_path, {
        '00_fx.ipynb': [cc('#| default_exp fx'), mc('# Fixture page\n> Summary with `code`'),
            cc('#| export\ndef f(a:int=1, # the a\n     ) -> int:\n    "Return `a`."\n    return a'),
            cc('#| echo: false\nprint("src-hidden")', outputs=[out('stream', name='stdout', text='shown-output\n')]),
            cc('#| include: false\nprint("dropped-src")', outputs=[out('stream', name='stdout', text='dropped-output\n')]),
            cc('#| output: false\nprint("kept-src")', outputs=[out('stream', name='stdout', text='hidden-output\n')]),
            cc('#| code-fold: true\nfolded = 1'),
            mc('See [the other page](01_other.ipynb#second-part), $|\\nabla W|$ and $$\\sum_i w_i$$')],
        '01_other.ipynb': [mc('# Other\n> The other page'), mc('## Second part\ntext')],
        'index.ipynb': [mc('# Home\n> The home page')]}, quarto)
    r = _build(proj, tmp_path/'site')
    assert r.returncode == 0, r.stderr
    soup = _soup(tmp_path/'site'/'fx.html')
    main = soup.find('main'); text = main.get_text()
    assert soup.select_one('.description code').get_text() == 'code'
    h = main.find(id='f')
    assert h is not None and 'the a' in h.find_next('pre').get_text()
    assert '{target=' not in str(main)
    assert 'src-hidden' not in text and 'shown-output' in text
    assert 'dropped-src' not in text and 'dropped-output' not in text
    assert 'kept-src' in text and 'hidden-output' not in text
    fold = main.find('details')
    assert fold is not None and 'folded' in fold.get_text() and not fold.has_attr('open')
    assert len(main.find_all('math')) == 2 and not soup.find('script', src=re.compile('^https?:'))
    assert main.find('a', string='the other page')['href'] == 'other.html#second-part'
    assert _soup(tmp_path/'site'/'other.html').find(id='second-part')
    nb = soup.select_one('.sgn-notebook-links a.sgn-nb-local')
    assert (tmp_path/'site'/nb['href']).resolve() == (proj/'nbs'/'00_fx.ipynb').resolve()
    side = [(c.get_text(strip=True), [a.get_text(strip=True) for a in c.find_next('ul').select('a')])
            for c in soup.select('.bd-sidebar-primary p.caption')]
    assert side == [('Group A', ['Other']), ('Other', ['Fixture page'])], side

# ---------------------------------------------------------------------------------------------------------------------
# Each page, as HTML

def test_sidebar_groups_come_from_quarto_yml(site):
    "The sidebar shows nbs/_quarto.yml's sections, in order, each with its pages; every page is in it."
    want = build_docs.sidebar_groups(NBS, [build_docs.Page(Path(p['src']), Path(p['html']), p['title'], '', None) for p in PAGES])
    soup = _soup(site/'core.html')
    got = [(c.get_text(strip=True) if c.name == 'p' else None, [a['href'] for a in c.find_next('ul').select('a')])
           for c in soup.select('.bd-sidebar-primary .bd-docs-nav p.caption')]
    assert [t for t,_ in got] == [t for t,_ in want if t], got
    sections = yaml.safe_load((NBS/'_quarto.yml').read_text())['website']['sidebar']['contents']
    assert {'Foundations', 'STU-GAN', 'DGL-GAN', 'alphaGAN', 'Evaluation', 'Running experiments'} <= {
        s['section'] for s in sections if isinstance(s, dict)}
    linked = {'core.html' if a['href'] == '#' else a['href'] for a in soup.select('.bd-sidebar-primary a[href]')}
    assert {p['html'] for p in PAGES if p['html'] != 'index.html'} <= linked, sorted({p['html'] for p in PAGES} - linked)

def test_source_links_point_at_file_and_line(site):
    "show_doc's source links go to the definition's file and line in the repository that pyproject.toml names."
    import tomllib
    repo = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['urls']['Repository'].rstrip('/')
    links = [a['href'] for a in _soup(site/'core.html').select('main a.sgn-source')]
    assert links, 'core.html has no source links'
    for href in links:
        m = re.fullmatch(re.escape(repo) + r'/blob/main/(sparse_gan_nb/\w+\.py)#L(\d+)', href)
        assert m, f'source link {href} is not <repository>/blob/main/<file>#L<line>'
        line = (ROOT/m.group(1)).read_text().splitlines()[int(m.group(2)) - 1]
        assert re.match(r'\s*(def|class|@|\w+\s*=)', line), f'{href} points at {line!r}, not a definition'

def test_links_inside_the_site_resolve(site):
    "Every relative link on every page reaches an existing file, and an existing anchor on a page."
    ids_of = {}
    def ids(dest):
        if dest not in ids_of: ids_of[dest] = {e['id'] for e in _soup(dest).select('[id]')}
        return ids_of[dest]
    for page in site.rglob('*.html'):
        if page.name.startswith('.'): continue
        for a in _soup(page).select('a[href]'):
            href = a['href']
            if re.match(r'[a-z]+:', href) or href == '#': continue
            target, _, frag = href.partition('#')
            dest = (page.parent/target.split('?')[0]).resolve() if target else page.resolve()
            assert dest.exists(), f'{page.relative_to(site)}: link {href} points to nothing'
            if frag and dest.suffix == '.html':
                assert frag in ids(dest), f'{page.relative_to(site)}: link {href} has no anchor {frag!r} there'

@pytest.mark.parametrize('page', PAGES, ids=ids)
def test_page_html(site, page):
    "Title, API docs at nbdev's anchors, a table of contents, previous/next links, nothing loaded from the network."
    soup = _soup(site/page['html'])
    assert soup.title.get_text().startswith(page['title']), f'<title> is {soup.title.get_text()!r}'
    main = soup.find('main')
    assert [h.get_text(strip=True).rstrip('#') for h in main.find_all('h1')] == [page['title']]
    for name, anchor in API.get(page['html'], []):
        el = main.find(id=anchor)
        assert el is not None, f'no API docs for {name} (no element with id={anchor!r})'
        h = el if el.name in ('h2', 'h3', 'h4') else el.find_parent(['h2', 'h3', 'h4']) or el.find_next(['h2', 'h3', 'h4'])
        # (as under Quarto, a section heading that reads the same, e.g. "FID" for `fid`, keeps the id: it introduces it)
        assert h is not None and name.lower() in h.get_text().lower(), f'#{anchor} is not the heading of {name}'
    assert soup.select('nav.page-toc a.nav-link'), 'no table of contents'
    assert soup.select('.prev-next-area a'), 'no previous/next links'
    for tag, attr in (('script', 'src'), ('link', 'href'), ('img', 'src')):
        ext = [t[attr] for t in soup.find_all(tag, attrs={attr: re.compile(r'^(https?:)?//')})
               if tag != 'link' or 'stylesheet' in t.get('rel', []) or 'preload' in t.get('rel', [])]
        assert not ext, f'the page loads {ext} from the network (the site must work offline)'
    for el in main.find_all(['math']): el.decompose()
    text = main.get_text(' ')
    outs = ' '.join(o.get_text(' ') for o in main.select('.cell_output'))
    for what, rx in OUTPUT_BAD.items(): assert not rx.search(outs), f'an output shows {what}: {rx.search(outs).group(0)!r}'
    prose = BeautifulSoup(str(main), 'html.parser')
    for el in prose.find_all(['pre', 'code']): el.decompose()
    for what, rx in PROSE_BAD.items():
        assert not rx.search(prose.get_text(' ')), f'the page shows {what}: {rx.search(prose.get_text(" ")).group(0)!r}'
    for what, rx in BAD_TEXT.items(): assert not rx.search(text), f'the page shows {what}: {rx.search(text).group(0)!r}'
    assert not _ansi.search(text), 'the page shows ANSI escape codes'

def test_every_announced_picture_is_committed():
    "The committed notebooks hold the pictures their prose announces (the build runs the same check on its pages)."
    errs = []
    for p in PAGES:
        nb = nbformat.read(NBS/p['src'], as_version=4)
        for c in nb.cells:
            if c.cell_type == 'code' and re.search(r'^#\|\s*hide\s*$', c.source, re.M) and any(
                    k.startswith('image/') for o in c.get('outputs', []) for k in o.get('data', {})):
                errs.append(f'{p["src"]}: a `#| hide` cell draws a picture that no page shows (use `#| echo: false`)')
    assert not errs, '\n'.join(errs)

def test_summaries_fit_on_one_line():
    "nbdev keeps only the first `>` line under a page's title as its summary: a second one would be cut off."
    long = [p['src'] for p in PAGES for c in p['nb'].cells[:3] if c.cell_type == 'markdown' and re.match(r'#\s', c.source)
            and sum(l.startswith('>') for l in c.source.splitlines()) > 1]
    assert not long, f'summaries that nbdev would cut after their first line: {long}'

# ---------------------------------------------------------------------------------------------------------------------
# Each page, in headless Chromium

CHECK_JS = r"""<script>
window.addEventListener('load', () => setTimeout(() => {
  const q = s => [...document.querySelectorAll(s)];
  const shown = e => { const b = e.getBoundingClientRect(); return b.width > 0 && b.height > 0; };
  const main = document.querySelector('main');
  const r = {
    title: document.title, h1: q('main h1').map(e => e.textContent.replace('#', '').trim()),
    text: main ? main.innerText : '',
    prose: q('main p, main li, main td, main th').filter(e => !e.closest('pre, .cell_output')).map(e => { const c = e.cloneNode(true); c.querySelectorAll('code').forEach(x => x.remove()); return c.textContent; }).join('\n'),
    imgs: q('img').map(i => ({complete: i.complete, w: i.naturalWidth, h: i.naturalHeight, src: (i.getAttribute('src') || '').slice(0, 60)})),
    toc: q('nav.page-toc a.nav-link').filter(shown).length,
    prevnext: q('.prev-next-area a').filter(shown).map(a => a.getAttribute('href')),
    sidebar: q('.bd-sidebar-primary a.reference').filter(shown).length,
    math: q('math').map(shown),
    headings: Object.fromEntries(q('main [id]').map(e => {  // an extra id is an empty span at the top of its section
      const el = e.tagName === 'SPAN' && !e.textContent ? e.parentElement : e;
      return [e.id, shown(el.matches('section') ? (el.querySelector('h1,h2,h3,h4') || el) : el)];
    })),
  };
  const s = document.createElement('script'); s.type = 'application/json'; s.id = '__docs_check__';
  s.textContent = JSON.stringify(r).replace(/</g, '\\u003c'); document.body.appendChild(s);
}, 200));
</script>"""

SEARCH_JS = r"""<script>
window.addEventListener('load', () => {  // type a query into the search box and submit it, as a reader would
  const f = document.querySelector('form.bd-search'); f.querySelector('input[name=q]').value = 'ERK'; f.submit();
});
</script>"""

def _chromium(site, html, tmp, js=CHECK_JS, shots=None):
    "Open a copy of the page with `js` added in Chromium; return (exit code, the DOM at the end, stderr)."
    page = site/html
    chk = page.with_name(f'.check.{page.name}')
    text = page.read_text(encoding='utf-8')
    i = text.rfind('</body>')
    chk.write_text(text[:i] + js + text[i:], encoding='utf-8')
    udd = tmp/('profile-' + html.replace('/', '_') + str(len(js)))
    cmd = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync', '--mute-audio',
           '--hide-scrollbars', f'--user-data-dir={udd}', '--virtual-time-budget=6000', '--window-size=1200,1600',
           '--dump-dom', chk.as_uri()]
    if shots is not None:
        png = shots/Path(html).with_suffix('.png'); png.parent.mkdir(parents=True, exist_ok=True)
        cmd.insert(-2, f'--screenshot={png}')
    try: r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally: chk.unlink(missing_ok=True)
    return r.returncode, r.stdout, r.stderr[-3000:]

def _report(dom):
    el = BeautifulSoup(dom, 'html.parser').find('script', id='__docs_check__')
    return json.loads(el.string) if el else None

@pytest.fixture(scope='session')
def browser(site, tmp_path_factory):
    "Every page through Chromium, a few at a time; screenshots land in `<site>/_screenshots` or `$DOCS_SCREENSHOTS`."
    if CHROMIUM is None:
        if os.environ.get('CI'): pytest.fail('CI must run the browser tests, but chromium is not installed (.ci/run installs it)')
        pytest.skip('chromium is not installed (Debian: apt-get install -y chromium)')
    shots = Path(os.environ.get('DOCS_SCREENSHOTS') or site/'_screenshots')
    tmp = tmp_path_factory.mktemp('chromium')
    htmls = [h for h in HTMLS if (site/h).exists()]
    with ThreadPoolExecutor(3) as ex:
        res = dict(zip(htmls, ex.map(lambda h: _chromium(site, h, tmp, shots=shots), htmls)))
        search = ex.submit(_chromium, site, 'index.html', tmp, SEARCH_JS).result()
    print(f'\nscreenshots: {shots}')
    return shots, res, search

@pytest.mark.parametrize('html', HTMLS)
def test_page_in_chromium(browser, html):
    "The page loads with its title, visible API docs, decoded pictures, a TOC, previous/next links, and no bad text."
    shots, res, _ = browser
    assert html in res, f'{html} was not built (see test_docs_build_succeeds)'
    rc, dom, err = res[html]
    r = _report(dom)
    assert rc == 0 and r is not None, f'chromium failed on {html} (exit {rc}):\n{err}'
    page = next((p for p in PAGES if p['html'] == html), None)
    if page: assert r['title'].startswith(page['title']) and r['h1'] == [page['title']], (r['title'], r['h1'])
    assert len(r['text'].strip()) > 200, 'the page rendered (almost) no text'
    for what, rx in BAD_TEXT.items(): assert not rx.search(r['text']), f'the page shows {what}: {rx.search(r["text"]).group(0)!r}'
    for what, rx in PROSE_BAD.items(): assert not rx.search(r['prose']), f'the page shows {what}: {rx.search(r["prose"]).group(0)!r}'
    assert not _ansi.search(r['text']), 'the page shows ANSI escape codes'
    bad = [i for i in r['imgs'] if not (i['complete'] and i['w'] > 0 and i['h'] > 0)]
    assert not bad, f'pictures that did not load: {bad}'
    assert all(r['math']), 'some maths was not laid out'
    assert r['toc'] > 0, 'no table of contents is shown'
    assert r['prevnext'], 'no previous/next links are shown'
    assert r['sidebar'] >= len(PAGES) - 1, f'the sidebar shows {r["sidebar"]} links'
    for name, anchor in API.get(html, []):
        assert r['headings'].get(anchor), f'the API docs heading for {name} (#{anchor}) is not shown'
    from PIL import Image
    with Image.open(shots/Path(html).with_suffix('.png')) as im:
        assert im.size == (1200, 1600) and len(im.convert('L').getcolors(1 << 16) or range(2)) > 8, 'blank screenshot'

def test_search_finds_the_masks_page(browser):
    "Typing 'ERK' into the search box of the home page (from file://) lists the masks page among the results."
    rc, dom, err = browser[2]
    soup = BeautifulSoup(dom, 'html.parser')
    assert rc == 0 and soup.title and soup.title.get_text().startswith('Search'), f'no search page (exit {rc}):\n{err}'
    hrefs = [a['href'] for a in soup.select('#search-results ul.search a[href]')]
    assert 'masks.html' in hrefs, f'search for ERK found {hrefs}'
