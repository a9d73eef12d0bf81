"""``powerd grafana push`` against a stand-in Grafana (``stub_grafana``), run as a user would.

The stand-in implements only the endpoints grafana-client calls and records the requests; these
tests prove what powerd sends (dashboards as checked in, overwrite, folder, credentials, phase
annotations, idempotent re-push) and that failures are one line without a traceback. They do not
prove that a real Grafana accepts or renders the dashboards (see stub_grafana's docstring).
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.grafana.stub_grafana import StubGrafana, stub_grafana
from tests.servers import free_port
from tests.tools import run_powerd

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"
TOKEN = "glsa_stubtoken_0123456789abcdef"
TIMEOUT_S = 60


def powerd(*args: str) -> subprocess.CompletedProcess[str]:
    return run_powerd("grafana", "push", *args, cwd=ROOT, timeout_s=TIMEOUT_S)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("powerd: error: ")
    return lines[0]


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def checked_in() -> dict[str, dict[str, Any]]:
    boards = [json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))]
    return {b["uid"]: b for b in boards}


def result_json(tmp_path: Path) -> Path:
    result = {
        "v": 1,
        "run": "bench-7",
        "phases": [
            {"phase": "idle", "trial": 0, "t_begin_ns": 1_700_000_000_000_000_000,
             "t_end_ns": 1_700_000_002_500_000_000, "energy_j": 12.5, "uncertainty_j": 0.1,
             "j_per_unit": None, "unit": "inference", "flags": []},
            {"phase": "infer", "trial": 0, "t_begin_ns": 1_700_000_002_500_000_000,
             "t_end_ns": 1_700_000_007_500_123_456, "energy_j": 60.0, "uncertainty_j": 0.4,
             "j_per_unit": 0.2, "unit": "token", "flags": ["receive_time"]},
        ],
    }  # fmt: skip
    path = tmp_path / "bench-7.json"
    path.write_text(json.dumps(result))
    return path


def test_push_uploads_every_dashboard_into_a_created_folder(token_file: Path) -> None:
    with stub_grafana(token=TOKEN) as g:
        proc = powerd("--url", g.url, "--token-file", str(token_file), "--folder", "powerd")
        assert proc.returncode == 0, proc.stderr
        posts = g.state.calls("POST", "/api/dashboards/db")
        expected = checked_in()
        assert set(expected) == {"powerd-fleet", "powerd-run", "powerd-efficiency"}
        assert {p.body["dashboard"]["uid"] for p in posts} == set(expected)
        assert len(g.state.calls("POST", "/api/folders")) == 1
        folder_uid = next(iter(g.state.folders))
        assert g.state.folders == {folder_uid: "powerd"}
        for p in posts:
            board = p.body["dashboard"]
            assert p.body["overwrite"] is True
            assert p.body["folderUid"] == folder_uid
            assert board.pop("id") is None  # create-or-replace by uid, never by a numeric id
            assert board == expected[board["uid"]]
        for r in g.state.requests:
            assert r.headers["Authorization"] == f"Bearer {TOKEN}"
        assert all(uid in proc.stdout for uid in expected)

        # Pushing again finds the folder by title and replaces the dashboards (version 2).
        again = powerd("--url", g.url, "--token-file", str(token_file), "--folder", "powerd")
        assert again.returncode == 0, again.stderr
        assert len(g.state.calls("POST", "/api/folders")) == 1
        assert g.state.versions == {"powerd-fleet": 2, "powerd-run": 2, "powerd-efficiency": 2}


def test_push_with_basic_auth_and_no_folder(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret-pw\n")
    with stub_grafana(basic=("admin", "s3cret-pw")) as g:
        proc = powerd("--url", g.url, "--user", "admin", "--password-file", str(password))
        assert proc.returncode == 0, proc.stderr
        posts = g.state.calls("POST", "/api/dashboards/db")
        assert len(posts) == len(checked_in())
        assert all("folderUid" not in p.body for p in posts)
        basic = base64.b64encode(b"admin:s3cret-pw").decode()
        assert all(r.headers["Authorization"] == f"Basic {basic}" for r in g.state.requests)
        assert not g.state.calls("GET", "/api/folders")


def test_results_become_phase_annotations_once(tmp_path: Path, token_file: Path) -> None:
    result = result_json(tmp_path)
    with stub_grafana(token=TOKEN) as g:
        args = ("--url", g.url, "--token-file", str(token_file), "--results", str(result))
        proc = powerd(*args)
        assert proc.returncode == 0, proc.stderr
        assert "2 added, 0 already there" in proc.stdout
        infer = next(a for a in g.state.annotations if "phase:infer" in a["tags"])
        # Region in ms, tags the run dashboard's annotation query filters on.
        assert infer["time"] == 1_700_000_002_500
        assert infer["timeEnd"] == 1_700_000_007_500
        assert set(infer["tags"]) == {"powerd", "run:bench-7", "phase:infer", "trial:0"}
        assert "60.00 ± 0.40 J" in infer["text"] and "0.2 J/token" in infer["text"]
        assert "receive_time" in infer["text"]
        run_board = checked_in()["powerd-run"]
        phases = next(a for a in run_board["annotations"]["list"] if a["name"] == "Phases")
        assert set(phases["target"]["tags"]) == {"powerd", "run:$run"}

        again = powerd(*args)
        assert again.returncode == 0, again.stderr
        assert "0 added, 2 already there" in again.stdout
        assert len(g.state.annotations) == 2


def test_refused_credentials_are_one_line(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token")
    with stub_grafana(token=TOKEN) as g:
        proc = powerd("--url", g.url, "--token-file", str(wrong))
        line = one_line_error(proc)
        assert "refused the credentials (401)" in line
        assert "not-the-token" not in proc.stderr + proc.stdout
        assert not g.state.dashboards


def test_unreachable_server_is_one_line(token_file: Path) -> None:
    port = free_port()  # nothing listens there
    proc = powerd("--url", f"http://user:pw@127.0.0.1:{port}", "--token-file", str(token_file))
    line = one_line_error(proc)
    assert f"cannot reach Grafana at http://127.0.0.1:{port}" in line
    assert "pw@" not in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--user", "admin"), "--user needs --password-file"),
        (("--password-file", "x"), "--password-file needs --user"),
        (("--token-file", "/nonexistent/token"), "cannot read token file /nonexistent/token"),
        (("--dashboards", "/nonexistent"), "no dashboard directory /nonexistent"),
        (("--results", "/nonexistent.json"), "cannot read result /nonexistent.json"),
    ],
)
def test_bad_arguments_are_one_line(args: tuple[str, ...], message: str) -> None:
    proc = powerd("--url", "http://127.0.0.1:9", *args)
    assert message in one_line_error(proc)


def test_bad_url_is_one_line() -> None:
    assert "use http(s)://HOST" in one_line_error(powerd("--url", "grafana:3000"))


def test_stub_refuses_a_second_dashboard_without_overwrite() -> None:
    """The stand-in behaves like Grafana where it matters: overwrite is what makes re-push work."""
    import urllib.error
    import urllib.request

    def post(g: StubGrafana, overwrite: bool) -> int:
        body = {"dashboard": {"uid": "x", "title": "X"}, "overwrite": overwrite}
        req = urllib.request.Request(
            f"{g.url}/api/dashboards/db",
            json.dumps(body).encode(),
            {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as err:
            return err.code

    with stub_grafana(token=TOKEN) as g:
        assert post(g, False) == 200
        assert post(g, False) == 412
        assert post(g, True) == 200
