"""Time the docs build, and (with --candidates) the two generators the docs site was chosen between.

    OMP_NUM_THREADS=1 python bench/bench_docs.py                # -> bench/results/docs_site/build.json
    OMP_NUM_THREADS=1 python bench/bench_docs.py --candidates   # also candidates.json (needs mkdocs-material, mkdocs-jupyter)

build.json: `python3 tasks.py docs`'s build (tools/build_docs.py --force: nbdev processes every notebook, then Sphinx
writes the site), from scratch, with the generator and its version. candidates.json: each candidate renders the same
nbdev-processed notebooks with a minimal configuration (no glue), so the two times compare the generators alone:
Sphinx + MyST-NB + PyData theme, and MkDocs + Material + mkdocs-jupyter; with what each loads from the network.
"""
import argparse, json, os, platform, re, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT/'bench'/'results'/'docs_site'

def _version(pkg):
    from importlib.metadata import version, PackageNotFoundError
    try: return version(pkg)
    except PackageNotFoundError: return None

def _remote(site:Path) -> list:
    "Scripts and stylesheets the site's pages load from the network."
    found = set()
    for page in site.rglob('*.html'):
        found |= set(re.findall(r'<(?:script|link)[^>]*(?:src|href)="(https?://[^"/]+/)', page.read_text(errors='ignore')))
    return sorted(found)

def time_build(tmp:Path) -> dict:
    cmd = [sys.executable, 'tools/build_docs.py', '--force', '--out', str(tmp/'site'), '--proc', str(tmp/'_proc')]
    t = time.time(); subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True); dt = time.time() - t
    import sphinx
    return dict(generator='Sphinx + MyST-NB + PyData Sphinx theme (tools/build_docs.py: nbdev processing, then Sphinx)',
                sphinx=sphinx.__version__, myst_nb=_version('myst-nb'), pydata_sphinx_theme=_version('pydata-sphinx-theme'),
                nbdev=_version('nbdev'), build_s=round(dt, 1), pages=sum(1 for p in (tmp/'site').rglob('*.html')
                          if p.name not in ('genindex.html', 'search.html') and '_static' not in p.parts),
                command='python3 tasks.py docs (here: python tools/build_docs.py --force, every notebook processed afresh)',
                remote_assets=_remote(tmp/'site'), machine=f'{platform.machine()}, 2 CPU cores shared, OMP_NUM_THREADS=1')

def time_candidates(tmp:Path) -> dict:
    "The processed notebooks (from the build above), rendered by each candidate with a minimal configuration."
    proc = tmp/'_proc'
    res = {}
    sx = tmp/'sx'; (sx/'src').mkdir(parents=True)
    nbs = sorted(p for p in proc.glob('*.ipynb'))
    for p in nbs: shutil.copy(p, sx/'src'/p.name)
    idx = json.loads((sx/'src'/'index.ipynb').read_text())
    idx['cells'].append(dict(cell_type='markdown', metadata={}, source='```{toctree}\n:hidden:\n' +
                             '\n'.join(p.stem for p in nbs if p.stem != 'index') + '\n```'))
    (sx/'src'/'index.ipynb').write_text(json.dumps(idx))
    (sx/'src'/'conf.py').write_text("extensions = ['myst_nb']\nhtml_theme = 'pydata_sphinx_theme'\nnb_execution_mode = 'off'\n"
                                    "myst_enable_extensions = ['dollarmath', 'amsmath']\n")
    t = time.time(); subprocess.run([sys.executable, '-m', 'sphinx', '-q', '-b', 'html', 'src', 'out'], cwd=sx, capture_output=True)
    res['sphinx_myst_nb_pydata'] = dict(build_s=round(time.time() - t, 1), versions=dict(
        sphinx=_version('sphinx'), myst_nb=_version('myst-nb'), pydata_sphinx_theme=_version('pydata-sphinx-theme')),
        remote_assets=_remote(sx/'out'))
    mk = tmp/'mk'; (mk/'docs').mkdir(parents=True)
    for p in nbs:  # mkdocs-jupyter validates strictly: nbdev's extra cell keys and timing metadata are dropped first
        nb = json.loads(p.read_text())
        for c in nb['cells']:
            for k in set(c) - {'id', 'cell_type', 'metadata', 'source', 'outputs', 'execution_count', 'attachments'}: del c[k]
            c['metadata'].pop('execution', None)
        (mk/'docs'/p.name).write_text(json.dumps(nb))
    (mk/'mkdocs.yml').write_text('site_name: x\ntheme: {name: material, features: [navigation.sections, navigation.footer]}\n'
                                 'plugins: [search, offline, {mkdocs-jupyter: {execute: false}}]\n')
    t = time.time()
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '-q', '-d', str(mk/'site')], cwd=mk, capture_output=True,
                       text=True, env=dict(os.environ, NO_MKDOCS_2_WARNING='1'))
    res['mkdocs_material_jupyter'] = dict(build_s=round(time.time() - t, 1), ok=r.returncode == 0, versions=dict(
        mkdocs=_version('mkdocs'), mkdocs_material=_version('mkdocs-material'), mkdocs_jupyter=_version('mkdocs-jupyter')),
        remote_assets=_remote(mk/'site'))
    res['notebooks'] = len(nbs)
    res['command'] = 'OMP_NUM_THREADS=1 python bench/bench_docs.py --candidates'
    return res

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--candidates', action='store_true', help='also time the two candidate generators (candidates.json)')
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        b = time_build(Path(d))
        (OUT/'build.json').write_text(json.dumps(b, indent=1) + '\n'); print(json.dumps(b, indent=1))
        if a.candidates:
            c = time_candidates(Path(d))
            (OUT/'candidates.json').write_text(json.dumps(c, indent=1) + '\n'); print(json.dumps(c, indent=1))
