#!/usr/bin/env python3
"""Install and run sparse-gan-nb's jobs on a machine that has only Python 3.11 and pip.

    python3 tasks.py demo    # install into .venv, then run the main experiment (STU-GAN on digits) into runs/demo
    python3 tasks.py test    # install into .venv, then check notebooks are clean and exported, and run every test
    python3 tasks.py docs    # install, then build the static docs site into site/ (no Quarto needed)
    python3 tasks.py lab     # install, then open the notebooks in JupyterLab; a notebook saved there is saved clean (nbdev's hook)

Set VENV to use another virtual environment folder. `.ci/run` calls `python3 tasks.py test`.
"""
import hashlib, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get('VENV', ROOT/'.venv'))
BIN = VENV/'bin'
# Tests run notebooks in parallel on small machines: one thread per process avoids oversubscribing the cores,
# which made torch's CPU kernels several times slower here.
ENV = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'), MPLBACKEND='Agg', PYTHONUNBUFFERED='1')

def sh(*cmd, **kw):
    print('+', ' '.join(map(str, cmd)), flush=True)
    subprocess.run(list(map(str, cmd)), check=True, cwd=ROOT, env=ENV, **kw)

def install():
    stamp = VENV/'.installed'
    if stamp.exists() and stamp.read_text() == _fingerprint(): return
    t = time.time()
    if not (BIN/'python').exists(): sh(sys.executable, '-m', 'venv', VENV)
    sh(BIN/'python', '-m', 'pip', 'install', '-q', '--upgrade', 'pip')
    sh(BIN/'python', '-m', 'pip', 'install', '-q', '-e', '.[dev]')
    stamp.write_text(_fingerprint())
    print(f'installed in {time.time() - t:.0f} s', flush=True)

def _fingerprint(): return hashlib.sha1((ROOT/'pyproject.toml').read_bytes()).hexdigest()

def _tree_state():
    "What git sees in the work tree: used to check that nbdev-clean and nbdev-export change nothing."
    out = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=all'], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    h = hashlib.sha1(out.encode())
    for line in sorted(out.splitlines()):
        p = ROOT/line[3:].split(' -> ')[-1]
        if p.is_file(): h.update(p.read_bytes())
    h.update(subprocess.run(['git', 'diff'], cwd=ROOT, capture_output=True, check=True).stdout)
    return h.hexdigest(), out

def check_unchanged(*cmd):
    "Run an nbdev command and fail if it changed any file: notebooks must be committed clean and exported."
    before = _tree_state()
    sh(*cmd)
    after = _tree_state()
    if after[0] != before[0]:
        changed = sorted(set(after[1].splitlines()) ^ set(before[1].splitlines())) or ['(contents of already-modified files)']
        sys.exit(f"'{' '.join(map(str, cmd))}' changed files:\n  " + '\n  '.join(changed) +
                 f"\nRun {cmd[0].name} and commit the result.")

def demo():
    install()
    sh(BIN/'sgn', 'run', 'stu_gan', 'runs/demo', '--overwrite', '-p', 'n_iter', '1500', '-p', 'sample_every', '500',
       '-p', 'ckpt_every', '500', '-p', 'log_every', '50', '-p', 'eval_n', '2000')  # ends with its numbers and where the samples are

def test():
    install()
    t = time.time()
    check_unchanged(BIN/'nbdev-clean')
    check_unchanged(BIN/'nbdev-export')
    sh(BIN/'nbdev-test', '--n-workers', '2', '--timing')
    r = subprocess.run([str(BIN/'python'), '-m', 'pytest', '-q', 'tests'], cwd=ROOT, env=ENV)
    print(f'tests took {time.time() - t:.0f} s', flush=True)
    if r.returncode: sys.exit(r.returncode)

def lab_command(root=ROOT, jupyter=None, port=None, token=None, browser=True):
    """JupyterLab serving `root`, opened on its nbs/, with nbdev's pre-save hook: it cleans each notebook as it is saved, as
    nbdev-clean would (jupyter_hooks = true in pyproject.toml). A JupyterLab started otherwise gets the hook from nbdev-install-hooks."""
    return [str(jupyter or BIN/'jupyter'), 'lab', f'--ServerApp.root_dir={root}', '--LabApp.default_url=/lab/tree/nbs',
            '--ContentsManager.pre_save_hook=nbdev.clean.clean_jupyter'] + ['--no-browser'] * (not browser) + \
           [f'--port={port}'] * bool(port) + [f'--IdentityProvider.token={token}'] * (token is not None) + \
           ['--allow-root'] * (hasattr(os, 'geteuid') and os.geteuid() == 0)  # containers and CI often run as root

def lab():
    install()
    try: sh(*lab_command())  # the hook reads pyproject.toml from the working folder: the repository
    except KeyboardInterrupt: pass

def docs():
    install()
    sh(BIN/'python', 'tools/build_docs.py')

if __name__ == '__main__':
    jobs = dict(install=install, demo=demo, test=test, docs=docs, lab=lab)
    if len(sys.argv) != 2 or sys.argv[1] not in jobs: sys.exit(f"usage: python3 tasks.py {{{'|'.join(jobs)}}}")
    jobs[sys.argv[1]]()
