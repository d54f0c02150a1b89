"README.md is made from nbs/index.ipynb (Quarto can't run here, so `tools/make_readme.py` stands in for nbdev-readme)."
import sys
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
from make_readme import render

def test_readme_is_in_step_with_the_index_notebook():
    assert (ROOT/'README.md').read_text() == render(), 'README.md is stale: run python tools/make_readme.py'

def test_readme_starts_with_the_two_commands():
    text = (ROOT/'README.md').read_text()
    assert 'python3 tasks.py demo' in text and 'python3 tasks.py test' in text
    assert 'python3 tasks.py test' in (ROOT/'.ci'/'run').read_text()  # CI runs the README's test command

def test_readme_sgn_eval_example_runs_on_the_demo_checkpoint(tmp_path):
    "The README's `sgn eval` line, run as written on a (shortened) demo run: the demo's command with fewer steps."
    import os, re, shlex, subprocess, json
    text = (ROOT/'README.md').read_text()
    line = next(l for l in text.splitlines() if l.startswith('sgn eval runs/demo/'))
    cmd = shlex.split(line.split('#')[0])
    exe = Path(sys.executable).parent
    env = dict(os.environ, OMP_NUM_THREADS='1')
    demo = subprocess.run([str(exe/'sgn'), 'run', 'stu_gan', 'runs/demo', '-p', 'n_iter', '30', '-p', 'eval_n', 'none'],
                          cwd=tmp_path, capture_output=True, text=True, env=env)
    assert demo.returncode == 0, demo.stderr[-2000:]
    r = subprocess.run([str(exe/cmd[0]), *cmd[1:]], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out['reference'] == 'digits' and out['n_samples'] == int(cmd[cmd.index('--n') + 1]) and out['fid'] > 0
