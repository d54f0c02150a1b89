"What `sgn run` shows while a run trains (a line in place on a terminal, plain lines in a file) and when it ends; TensorBoard logging."
import io, json, os, pty, subprocess, sys, threading, time
from pathlib import Path
import pytest
from sparse_gan_nb.core import atomic_write_json
from sparse_gan_nb.experiment import (ProgressPrinter, progress_line, PROGRESS_FILE, check_params, notebook_params, find_experiment,
                                      run_notebook, SCAFFOLD_PARAMS)
from sparse_gan_nb.cli import run_summary

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_iter=12, bs=32, log_every=4, sample_every=6, ckpt_every=6, width=0.5, d_width=0.5)

class TTY(io.StringIO):
    def isatty(self): return True

def record(i, n=40, fid_iter=None, state='training'):
    return dict(state=state, iter=i, n_iter=n, losses=dict(D=1.25, G=0.75), steps_per_s=10., eta_s=(n - i) / 10, elapsed_s=i / 10,
                fid=20. + i / 100 if fid_iter else None, fid_iter=fid_iter)

def train(d, steps, pause=0.03):
    "A fake training: rewrite progress.json as a learner's callback does, in a thread, while a printer watches."
    for i in steps:
        atomic_write_json(d/PROGRESS_FILE, record(i, fid_iter=20 if i >= 20 else None, state='finished' if i == 40 else 'training'))
        time.sleep(pause)

@pytest.mark.parametrize('mode,stream', [('auto', TTY), ('auto', io.StringIO), ('line', io.StringIO), ('off', TTY)])
def test_printer_modes(tmp_path, mode, stream):
    out = stream()
    with ProgressPrinter(tmp_path, out, mode=mode, every=3600, poll=0.01) as pp:
        t = threading.Thread(target=train, args=(tmp_path, range(0, 41, 5))); t.start(); t.join()
    text = out.getvalue()
    if mode == 'off': assert text == '' and pp.mode == 'off'; return
    last = 'G step 40/40 (100%)  L_D 1.250  L_G 0.750  10.0 it/s  done in 0:04  FID 20.4 @20'
    if pp.mode == 'line':  # a terminal: one line, rewritten in place, closed by one newline
        assert mode == 'line' or stream is TTY
        assert text.count('\n') == 1 and text.endswith(last + '\x1b[K\n') and text.startswith('\rG step ')
    else:  # a file: the first record, the evaluation's step, the end (`every` is an hour here)
        lines = text.splitlines()
        assert '\r' not in text and lines[0].startswith('G step ') and lines[-1] == last
        assert len(lines) <= 3  # polls see every file here, unless the machine is slow: never more than 3 lines

def test_printer_follows_a_sub_run_and_ignores_old_files(tmp_path):
    "A run that trains a run inside its folder (the DGL-GAN teacher) is shown under the folder's name; a file of an earlier session is not shown."
    atomic_write_json(tmp_path/PROGRESS_FILE, record(40, state='finished'))
    old = time.time() - 3600; os.utime(tmp_path/PROGRESS_FILE, (old, old))
    out = io.StringIO(); pp = ProgressPrinter(tmp_path, out, mode='lines')
    pp.update(); assert out.getvalue() == ''
    (tmp_path/'teacher').mkdir(); atomic_write_json(tmp_path/'teacher'/PROGRESS_FILE, record(10))
    pp.update(); assert out.getvalue().startswith('teacher: G step 10/40 (25%)')
    time.sleep(0.02); atomic_write_json(tmp_path/PROGRESS_FILE, record(5))
    pp.update(); assert out.getvalue().splitlines()[-1].startswith('G step 5/40')
    with pytest.raises(ValueError, match="unknown mode='fancy'"): ProgressPrinter(tmp_path, out, mode='fancy')

def test_progress_line_without_optional_parts():
    rec = dict(record(0), steps_per_s=None, eta_s=None, losses=dict(D=float('nan')))
    assert progress_line(rec) == 'G step 0/40 (0%)'

def test_summary_names_folder_numbers_and_files(tmp_path):
    (tmp_path/'samples').mkdir(); (tmp_path/'samples'/'last.png').write_bytes(b'')
    m = dict(iterations=1500, train_time_s=81.23, fid=12.3456, fid_best=11.9, fid_best_iter=1000, is_mean=4.5, density_G=0.1,
             stored_params_G=6797, params_G=66241, train_flops_vs_dense=0.3873)
    s = run_summary(dict(metrics=m, notebook='stu_gan'), tmp_path).splitlines()
    assert s[0] == f'finished: {tmp_path}  (stu_gan, 1500 G steps, 81.2 s of training)'
    assert s[1] == ('  FID 12.35 (best 11.9 at step 1000)  IS 4.5  G density 0.1  G parameters stored 6,797 of 66,241  '
                    'train FLOPs vs dense 0.3873')
    assert s[2:] == [f"  samples: {tmp_path/'samples'/'last.png'}", f"  every number: {tmp_path/'metrics.json'}"]
    s = run_summary(dict(metrics=dict(iterations=2, train_time_s=0.5, params_G=100)), tmp_path/'none').splitlines()
    assert s[1] == '  G parameters 100' and len(s) == 3  # no FID, no samples
    assert run_summary(dict(metrics=dict(y=2.)), tmp_path/'toy').splitlines()[0] == f"finished: {tmp_path/'toy'}  (run)"  # any notebook's metrics

def test_sgn_run_on_a_terminal_rewrites_one_line(tmp_path):
    "Through a pseudo-terminal, as a person sees it: the line is redrawn with \\r, and the summary follows on its own lines."
    master, slave = pty.openpty()
    p = subprocess.Popen([str(Path(sys.executable).parent/'sgn'), 'run', 'dense_baseline', str(tmp_path/'run'),
                          *[a for k, v in dict(TINY, eval_n='none').items() for a in ('-p', k, str(v))]],
                         stdout=slave, stderr=subprocess.PIPE, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1', COLUMNS='200'))
    os.close(slave)
    chunks = []
    while True:
        try: b = os.read(master, 4096)
        except OSError: break  # the child closed the terminal
        if not b: break
        chunks.append(b)
    err = p.stderr.read().decode(); p.wait(); os.close(master)
    text = b''.join(chunks).decode().replace('\r\n', '\n')  # the terminal turns \n into \r\n
    assert p.returncode == 0, err
    assert err == ''  # nothing on stderr: no kernel warning, no papermill noise
    line, summary = text.split('\nfinished: ')
    assert line.startswith('\rG step ') and line.count('\r') >= 1 and 'G step 12/12 (100%)' in line.split('\r')[-1] and '\n' not in line
    assert summary.startswith(f"{tmp_path/'run'}  (dense_baseline, 12 G steps") and 'samples: ' in summary and 'every number: ' in summary

def test_tensorboard_parameter_is_checked_before_a_kernel_starts(monkeypatch):
    import importlib.util
    declared = notebook_params(find_experiment('stu_gan'))
    assert list(declared)[-1] == 'tensorboard' and declared['tensorboard'] == SCAFFOLD_PARAMS['tensorboard']
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'tensorboard' else real(name, *a))
    with pytest.raises(ImportError, match=r"tensorboard=true logs to TensorBoard, which is not installed here: pip install 'sparse-gan-nb\[tensorboard\]'"):
        check_params(declared, dict(tensorboard='true'))
    assert check_params(declared, dict(tensorboard='false')) == dict(tensorboard=False)

def test_tensorboard_event_files(tmp_path):
    "A run with tensorboard=True writes, into its folder, the history's scalars and the sample grids as images."
    ea_mod = pytest.importorskip('tensorboard.backend.event_processing.event_accumulator', reason="pip install 'sparse-gan-nb[tensorboard]'")
    res = run_notebook('stu_gan', tmp_path/'run', dict(TINY, eval_n=500, eval_every=6, tensorboard=True))
    assert res['params']['tensorboard'] is True
    ea = ea_mod.EventAccumulator(str(tmp_path/'run'/'tensorboard'), size_guidance={'scalars': 0, 'images': 0}).Reload()
    tags = set(ea.Tags()['scalars'])
    assert {'loss/d', 'loss/g', 'G/density', 'G/itop', 'D/density', 'eval/fid', 'eval/is_mean', 'cost/train_flops'} <= tags, tags
    rows = [l.split(',')[0] for l in (tmp_path/'run'/'history.csv').read_text().splitlines()[1:]]
    assert [e.step for e in ea.Scalars('loss/d')] == [int(i) for i in rows] == [4, 6, 8, 12]  # a row per log_every, and one per evaluation
    assert [e.step for e in ea.Scalars('eval/fid')] == [6, 12]
    assert abs(ea.Scalars('eval/fid')[-1].value - res['metrics']['fid']) < 1e-3
    assert [e.step for e in ea.Images('samples')] == [6, 12]
