"JupyterLab as `python3 tasks.py lab` starts it: a notebook opened through the REST API runs in a kernel, and a save is clean."
import asyncio, importlib.util, json, os, shutil, socket, subprocess, sys, time, urllib.request, uuid
from pathlib import Path
import pytest

pytest.importorskip('jupyterlab', reason='JupyterLab is in the dev extra: pip install -e ".[dev]"')
from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parents[1]
NB = 'nbs/00_core.ipynb'

def _tasks():
    spec = importlib.util.spec_from_file_location('tasks', ROOT/'tasks.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def _free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "JupyterLab on a copy of the project's config and one notebook, on localhost with a token; stopped at the end."
    root = tmp_path_factory.mktemp('lab')
    shutil.copy(ROOT/'pyproject.toml', root); (root/'nbs').mkdir(); shutil.copy(ROOT/NB, root/NB)
    port, token = _free_port(), uuid.uuid4().hex
    cmd = _tasks().lab_command(root, Path(sys.executable).parent/'jupyter', port, token, browser=False) + ['--ServerApp.ip=127.0.0.1']
    log = open(root/'lab.log', 'w')
    proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, JUPYTER_RUNTIME_DIR=str(root/'runtime')))
    base = f'http://127.0.0.1:{port}'
    try:
        for _ in range(240):
            if proc.poll() is not None: pytest.fail(f'JupyterLab exited: {(root/"lab.log").read_text()[-2000:]}')
            try: urllib.request.urlopen(f'{base}/api/status?token={token}', timeout=2); break
            except OSError: time.sleep(0.25)
        else: pytest.fail(f'JupyterLab did not answer in 60 s: {(root/"lab.log").read_text()[-2000:]}')
        yield dict(root=root, base=base, token=token, port=port)
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()

def api(lab, method, path, body=None):
    req = urllib.request.Request(f"{lab['base']}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={'Authorization': f"token {lab['token']}", 'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=30) as r: return json.loads(r.read() or b'null')

def test_token_is_required(lab):
    with pytest.raises(urllib.error.HTTPError) as e: urllib.request.urlopen(f"{lab['base']}/api/contents/{NB}", timeout=10)
    assert e.value.code == 403

async def _execute(lab, kernel_id:str, codes:list) -> list:
    "Run each code through the kernel's websocket, as JupyterLab does; return each one's (status, execute_result text)."
    ws = await websocket_connect(f"ws://127.0.0.1:{lab['port']}/api/kernels/{kernel_id}/channels?token={lab['token']}")
    session, out = uuid.uuid4().hex, []
    try:
        for code in codes:
            mid = uuid.uuid4().hex
            ws.write_message(json.dumps(dict(channel='shell', buffers=[], metadata={}, parent_header={},
                header=dict(msg_id=mid, msg_type='execute_request', session=session, username='test', version='5.3', date=''),
                content=dict(code=code, silent=False, store_history=True, user_expressions={}, allow_stdin=False, stop_on_error=True))))
            status = result = None
            while status is None:
                msg = json.loads(await asyncio.wait_for(ws.read_message(), 120))
                if msg['parent_header'].get('msg_id') != mid: continue
                if msg['msg_type'] == 'execute_result': result = msg['content']['data']['text/plain']
                if msg['msg_type'] == 'execute_reply': status = msg['content']['status']
            out.append((status, result))
    finally: ws.close()
    return out

def test_open_a_notebook_and_run_its_cells_in_a_kernel(lab):
    "The notebook, read through the REST API, runs in a kernel up to its first cell with a result, which matches the committed output."
    nb = api(lab, 'GET', f'/api/contents/{NB}')
    assert nb['type'] == 'notebook' and nb['content']['cells'][1]['source'].startswith('# ')
    cells = [c for c in nb['content']['cells'] if c['cell_type'] == 'code']
    k = next(i for i, c in enumerate(cells) if any(o['output_type'] == 'execute_result' for o in c['outputs']))
    expected = next(o for o in cells[k]['outputs'] if o['output_type'] == 'execute_result')['data']['text/plain']
    sess = api(lab, 'POST', '/api/sessions', dict(path=NB, type='notebook', name='', kernel=dict(name='python3')))
    try:
        res = asyncio.run(_execute(lab, sess['kernel']['id'], [c['source'] for c in cells[:k + 1]]))
        assert all(s == 'ok' for s, _ in res), res
        assert res[-1][1] == expected, (res[-1][1], expected)
    finally: api(lab, 'DELETE', f"/api/sessions/{sess['id']}")

def test_a_notebook_saved_in_lab_is_clean(lab):
    "nbdev's pre-save hook (tasks.py lab, jupyter_hooks = true) drops what a session adds: execution counts, cell and notebook metadata."
    path = lab['root']/NB
    before = path.read_bytes()
    nb = api(lab, 'GET', f'/api/contents/{NB}')
    for i, c in enumerate(nb['content']['cells']):
        if c['cell_type'] == 'code': c['execution_count'] = i; c['metadata'].update(collapsed=False, scrolled=True, execution=dict(started='now'))
    nb['content']['metadata']['language_info'] = dict(name='python', version='3.11.0')  # what a kernel adds
    api(lab, 'PUT', f'/api/contents/{NB}', dict(type='notebook', format='json', content=nb['content']))
    saved = json.loads(path.read_text())
    assert all(c.get('execution_count') is None and set(c['metadata']) <= {'tags'} for c in saved['cells'] if c['cell_type'] == 'code')
    assert 'language_info' not in saved['metadata']
    assert path.read_bytes() == before  # exactly the committed, nbdev-clean file
