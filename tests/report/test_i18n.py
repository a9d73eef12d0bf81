"""Reports in English and Korean from one gettext catalogue (issue 14 item 5).

The catalogue must cover every marked string (a small AST extractor finds them), the committed
.mo must be the .po compiled, a report rendered in Korean must show no English text that is not
data (ids, flags, units), and both languages must show the same numbers from the same JSON.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import string
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from powerd import i18n
from powerd.crosscheck import NOT_STATED
from powerd.errors import PowerdError
from powerd.report.html import render_html
from powerd.report.table import format_table
from powerd.verify.protocol import parse_claim
from powerd.verify.render import verification_table
from powerd.verify.stability import NO_TEMPERATURE, NOT_SETTLED_CAPPED
from powerd.verify.verdict import CAP_FLAGS, EXCLUDE_FLAGS, EXIT_CODES, claim_verdict, overall
from tests.tools import run_powerd

KO_PO = i18n.LOCALE_DIR / "ko" / "LC_MESSAGES" / "powerd.po"
T0 = 1_700_000_000 * 10**9

# English words allowed in a Korean report: proper names, units and symbols, never prose
ALLOWED = {
    "powerd",
    "MLPerf",
    "mlperf",
    "LoadGen",
    "SHA",
    "sha256",
    "U95",
    "UTC",
    "query",
    "mJ",
    "inf",
    "audit",  # the command `powerd audit RUN`
}


def trial(k: int, e: float, u: float = 2.0, flags: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "phase": "trial",
        "trial": k,
        "energy_j": e,
        "uncertainty_j": u,
        "duration_s": 10.0,
        "count": 50,
        "net_energy_j": None,
        "net_uncertainty_j": None,
        "flags": list(flags),
        "unit": "inference",
    }


def verification() -> dict[str, Any]:
    """Claims that give every kind of verdict and reason the verdict module writes."""
    good = [trial(1, 100.0), trial(2, 101.0)]
    capped = [trial(1, 100.0, flags=("not_stable", "receive_time")), trial(2, 100.0)]
    short = [trial(1, 100.0, flags=("too_short",)), trial(2, 100.0)]
    claims = [
        claim_verdict(parse_claim("mean_power_w <= 12.5"), good, 2, "all"),  # supported
        claim_verdict(parse_claim("mean_power_w <= 9"), good, 2, "all"),  # not supported
        claim_verdict(parse_claim("j_per_unit <= 2.01"), good, 2, "all"),  # straddles
        claim_verdict(parse_claim("energy_j <= 150"), capped, 2, "all"),  # capped by a flag
        claim_verdict(parse_claim("energy_j <= 150"), short, 3, "median"),  # too few usable
        claim_verdict(parse_claim("energy_j <= 150 net"), good, 2, "all"),  # no idle baseline
        claim_verdict(parse_claim("units_per_j >= 0.1"), good, 2, "median"),  # median supported
    ]
    verdict = overall(claims)
    return {
        "protocol": {"path": "p.toml", "sha256": "ab" * 32},
        "stability": {
            "required": True,
            "reached": False,
            "reason": NOT_SETTLED_CAPPED.format(pct="1", window_s="0.4", max_s="5"),
            "temperature": {"checked": False, "reason": NO_TEMPERATURE},
        },
        "claims": claims,
        "verdict": verdict,
        "exit_code": EXIT_CODES[verdict],
    }


def result() -> dict[str, Any]:
    def phase(name: str, k: int, b_s: float, e_s: float, **extra: Any) -> dict[str, Any]:
        p: dict[str, Any] = {
            "phase": name,
            "trial": k,
            "t_begin_ns": T0 + int(b_s * 1e9),
            "t_end_ns": T0 + int(e_s * 1e9),
            "duration_s": e_s - b_s,
            "count": 50,
            "unit": "inference",
            "energy_j": 100.123456,
            "uncertainty_j": 0.25,
            "mean_power_w": 100.123456 / (e_s - b_s),
            "peak_power_w": 12.5,
            "j_per_unit": 2.00246912,
            "j_per_unit_uncertainty": 0.005,
            "idle_power_w": 2.0,
            "net_energy_j": 80.123456,
            "net_uncertainty_j": 0.3,
            "flags": ["receive_time"],
            "timing": {"source": "marker", "uncertainty_ns": 500_000},
            "channels": {
                "sim:square": {
                    "energy_j": 100.123456,
                    "uncertainty_j": 0.25,
                    "mean_power_w": 10.0,
                    "peak_power_w": 12.5,
                    "samples": 1000,
                    "coverage": 1.0,
                    "source_class": "meter",
                    "method": "trapezoid",
                    "flags": [],
                    "primary": True,
                },
                "sim:gpu": {"energy_j": None, "samples": 0, "primary": False, "flags": []},
            },
            "meta": {},
        }
        p.update(extra)
        return p

    mlperf = {
        "scenario": "Offline",
        "power_begin": "12-03-2026 10:00:00.000",
        "power_end": "12-03-2026 10:00:10.000",
        "window_s": 10.0,
        "query_count": 1000,
        "sample_count": 10,
        "avg_power_w": 10.0123,
        "metric": "mJ/query",
        "energy_mj_per_query": 100.12,
        "powerd_mj_per_query": 100.123,
        "powerd_mj_per_query_uncertainty": 0.25,
        "powerd_energy_j": 100.123,
        "powerd_uncertainty_j": 0.25,
        "flags": [],
    }
    pair = {"device": "gpu0", "measures": "board", "a": "sim:square", "b": "sim:gpu"}
    cross_checks = [
        {**pair, "ratio": 1.01, "difference_j": 1.0, "uncertainty_j": 2.0, "status": "agree"},
        {**pair, "ratio": 1.2, "difference_j": 20.0, "uncertainty_j": 2.0, "status": "disagree"},
        {
            **pair,
            "ratio": 1.01,
            "difference_j": 1.0,
            "uncertainty_j": None,
            "status": "unknown",
            "reason": NOT_STATED.format(channels="sim:gpu"),
        },
    ]
    v = verification()
    return {
        "v": 1,
        "run": "r-ko",
        "phases": [
            phase("trial", 1, 0.0, 10.0, cross_checks=cross_checks),
            phase("loadgen", 0, 11.0, 21.0, mlperf=mlperf),
        ],
        "trials": [
            {
                "phase": "trial",
                "trials": 2,
                "energy_j": {"median": 100.0, "min": 99.0, "max": 101.0, "rel_spread": 0.02},
            }
        ],
        "verification": v,
        "verdicts": [
            {
                "claim": c["claim"],
                "verdict": c["verdict"],
                "margin": c["margin"],
                "reason": c["reason"],
            }
            for c in v["claims"]
        ],
    }


def manifest() -> dict[str, Any]:
    return {
        "run": "r-ko",
        "revision": 1,
        "sealed_utc": "2026-12-03T10:00:00Z",
        "powerd_version": "0.1.0",
        "host": "lab-host",
        "command": "verify",
        "probes": ["sim:square"],
        "config_sha256": "cd" * 32,
        "config_file_sha256": None,
        "clock_sync": {"agent-a": {"offset_ns": 1200, "uncertainty_ns": 300}},
        "markers": {"count": 4, "sha256": "ef" * 32},
        "result_sha256": "01" * 32,
        "channels": {
            "sim:square": {
                "instrument": {
                    "maker": "YOKOGAWA",
                    "model": "WT310E",
                    "serial": "C2QM1",
                    "firmware": "F1.03",
                },
                "calibration": {
                    "certificate": "KOLAS-123",
                    "lab": "KTL",
                    "date": "2026-01-01",
                    "due": "2027-01-01",
                },
                "source_class": "meter",
                "samples": 1000,
                "samples_sha256": "23" * 32,
            },
            "sim:gpu": {
                "instrument": {"source": "simulated"},
                "samples": 0,
                "samples_sha256": None,
            },
        },
    }


def traces() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    t = np.arange(0, 21_000, 10, dtype=np.int64) * 10**6 + T0
    return {
        "sim:square": (t, np.where((t // 10**9) % 2 == 0, 12.5, 7.5)),
        "sim:gpu": (t[:0], t[:0]),
    }


def render(lang: str) -> tuple[str, str]:
    """(HTML page, terminal text) of the fixture run in ``lang``."""
    res = result()
    with i18n.language(lang):
        page = render_html(res, traces(), {"sim:gpu": "J"}, "powerd 0.1.0", manifest())
        text = format_table(res) + "\n" + verification_table(res["verification"])
    return page, text


class _Text(HTMLParser):
    """The text a reader sees (no <style>, no <script>: the zoomable traces' code and data;
    their words shown on the page come translated in the data), and the ``lang`` of <html>."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.lang: str | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html":
            self.lang = dict(attrs).get("lang")
        if tag in ("style", "script"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible(page: str) -> tuple[str, str | None]:
    p = _Text()
    p.feed(page)
    return " ".join(p.parts), p.lang


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(obj, list | tuple):
        return [s for v in obj for s in _strings(v)]
    return []


def data_words() -> set[str]:
    """Words that come from the data (ids, flags, claims, units, names), not from templates.
    Reasons are prose the verdict module wrote in English: they are not data."""
    res, man = result(), manifest()
    for c in res["verification"]["claims"]:
        c.pop("reason")
        for t in c["trials"]:
            t.pop("reason")
    for v in res["verdicts"]:
        v.pop("reason")
    for p in res["phases"]:
        for x in p.get("cross_checks", []):
            x.pop("reason", None)
    res["verification"]["stability"].pop("reason")
    res["verification"]["stability"]["temperature"].pop("reason")
    texts = _strings(res) + _strings(man) + list(traces()) + ["J", "powerd 0.1.0"]
    # verdict words and the aggregate are translated, never data
    skip = {"supported", "not supported", "inconclusive", "all", "median"}
    return {w for s in texts if s not in skip for w in re.findall(r"[A-Za-z_]+", s)}


def english_words(text: str) -> set[str]:
    """Words of two or more ASCII letters that are neither data nor allowed names/units."""
    allowed = data_words() | ALLOWED | set(CAP_FLAGS) | set(EXCLUDE_FLAGS)
    text = re.sub(r"\b[0-9a-f]{16,}\b", " ", text)  # digests
    words = set(re.findall(r"[A-Za-z][A-Za-z_]+", text))
    return {w for w in words if w not in allowed and w.lower() not in {"ns", "ms"}}


def numbers(text: str) -> Counter[str]:
    """Every number shown (thousands separators kept), punctuation after it dropped."""
    return Counter(n.rstrip(".,") for n in re.findall(r"\d[\d,.]*(?:e[-+]?\d+)?", text))


def fields(s: str) -> set[str]:
    return {f for _lit, f, _spec, _conv in string.Formatter().parse(s) if f is not None}


# --- the catalogue ---------------------------------------------------------------------------


def test_catalogue_covers_every_marked_string_with_the_same_fields() -> None:
    found = i18n.extract_msgids(i18n.source_files())
    assert len(found) > 100  # the extractor sees the report modules
    po = i18n.parse_po(KO_PO.read_text("utf-8"))
    missing = sorted(m for m in found if not po.get(m))
    assert missing == [], "add these to powerd/locale/ko/LC_MESSAGES/powerd.po: " + repr(missing)
    stale = sorted(m for m in po if m and m not in found)
    assert stale == []
    for msgid in found:
        ko = po[msgid]
        assert fields(ko) == fields(msgid), msgid
        for ch in "<>&":  # the HTML escapes around translations rely on this
            assert ko.count(ch) <= msgid.count(ch), msgid
    # the glossary of the issue, used as given
    assert po["supported"] == "지지됨"
    assert po["not supported"] == "지지되지 않음"
    assert po["inconclusive"] == "결론 불가"
    assert po["calibration"] == "교정"
    assert "불확도" in po[next(m for m in found if m.startswith("Uncertainties (± U95)"))]


def test_committed_mo_is_the_po_compiled(tmp_path: Path) -> None:
    mo = KO_PO.with_suffix(".mo")
    assert mo.read_bytes() == i18n.compile_mo(i18n.parse_po(KO_PO.read_text("utf-8"))), (
        "stale .mo: run `python -m powerd.i18n compile`"
    )
    tr = i18n.translations("ko")
    assert tr.gettext("verdict") == "판정"


def test_extractor_finds_all_three_markers(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text('x = _("a {b}")\ny = N_("c")\nz = R_("d")\nw = other("e")\nv = _(name)\n')
    assert sorted(i18n.extract_msgids([src])) == ["a {b}", "c", "d"]


def test_every_reason_template_is_registered_at_import() -> None:
    """R_() must be a module-level constant of a module in REASON_MODULES: tr_reason imports
    those, so `powerd report` in a fresh process translates a stored reason."""
    root = Path(i18n.__file__).parent
    places = []
    for path in i18n.source_files():
        tree = ast.parse(path.read_text("utf-8"))
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and fn.name != "R_":
                for node in ast.walk(fn):
                    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "R_":
                        places.append(f"{path.name}:{node.lineno} inside {fn.name}()")
        if "R_(" in path.read_text("utf-8") and path.name != "i18n.py":
            module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
            assert module in i18n.REASON_MODULES, module
    assert places == []
    code = (
        "from powerd import i18n\n"
        "i18n.set_lang('ko')\n"
        "print(i18n.tr_reason('no usable trial: not used: too_short'))\n"
        "print(i18n.tr_reason('accuracy not stated: nvml:gpu0'))\n"
        "print(i18n.tr_reason('power not within +-1 % over 0.4 s'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == [
        "사용 가능한 시행 없음: 사용하지 않음: too_short",
        "정확도 미기재: nvml:gpu0",
        "소비 전력이 0.4 s 동안 +-1 % 이내로 유지되지 않음",
    ]


def test_language_choice_flag_env_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(i18n.ENV, raising=False)
    assert i18n.resolve(None) == "en"
    monkeypatch.setenv(i18n.ENV, "ko_KR.UTF-8")
    assert i18n.resolve(None) == "ko"
    assert i18n.resolve("en") == "en"  # the flag wins
    with pytest.raises(PowerdError, match="unknown report language 'fr'"):
        i18n.resolve("fr")
    with i18n.language("ko"):
        assert i18n.lang() == "ko" and i18n._("verdict") == "판정"
    assert i18n.lang() == "en" and i18n._("verdict") == "verdict"


def test_terminal_width_counts_hangul_twice() -> None:
    assert i18n.width("판정") == 4 and i18n.width("ab") == 2
    assert i18n.ljust("판정", 6) == "판정  "


# --- a run rendered in both languages ---------------------------------------------------------


def test_korean_report_has_no_english_prose() -> None:
    page, text = render("ko")
    shown, lang = visible(page)
    assert lang == "ko"
    assert english_words(shown) == set()
    assert english_words(text) == set()


def test_english_report_is_english_and_unchanged_by_the_catalogue() -> None:
    page, text = render("en")
    shown, lang = visible(page)
    assert lang == "en"
    assert "Verification" in shown and "Signatures" in shown
    assert "would be supported, but at most inconclusive: not_stable" in shown
    assert not re.search(r"[\uac00-\ud7a3]", page + text)  # no Hangul


def test_verdict_words_and_reasons_in_korean() -> None:
    page, text = render("ko")
    shown, _lang = visible(page)
    for word in ("지지됨", "지지되지 않음", "결론 불가"):
        assert word in shown and word in text
    assert "supported" not in shown.replace("not_stable", "")
    assert "지지됨에 해당하나 최대 결론 불가로 제한됨: not_stable" in shown
    assert "참고 (판정에 영향 없음): receive_time" in shown
    assert "시행 3회 중 1회만 사용 가능" in text
    assert "판단 불가 (정확도 미기재: sim:gpu)" in shown and "불일치" in text
    assert "순 수치에 필요한 유휴 기준선 없음" in text
    assert "장치 온도를 보고하는 프로브가 없어 소비 전력만 확인함" in text
    # the CSS classes of the verdict cells do not change with the language
    en_page, _ = render("en")
    classes = re.compile(r'class="verdict (\w*)"')
    assert classes.findall(page) == classes.findall(en_page)


def test_numbers_are_the_same_in_both_languages() -> None:
    en_page, en_text = render("en")
    ko_page, ko_text = render("ko")
    assert numbers(visible(en_page)[0]) == numbers(visible(ko_page)[0])
    assert numbers(en_text) == numbers(ko_text)
    # the terminal table's figures, cell by cell
    en_rows = [r.split()[2:] for r in en_text.splitlines()[2:4]]
    ko_rows = [r.split()[2:] for r in ko_text.splitlines()[2:4]]
    assert en_rows == ko_rows


def test_terminal_columns_line_up_in_korean() -> None:
    _page, text = render("ko")
    head, first = text.splitlines()[1:3]
    starts_head = [m.start() for m in re.finditer(r"(?<=  )\S", head)]
    cols = [i18n.width(head[:i]) for i in starts_head]
    # each header cell starts at the same terminal column as the row's cell below it
    starts_row = [m.start() for m in re.finditer(r"(?<=  )\S", first)]
    assert len(cols) == 10 and cols == starts_row


def test_rendering_does_not_touch_the_result() -> None:
    res = result()
    before = json.dumps(res, sort_keys=True)
    for lang in ("en", "ko"):
        with i18n.language(lang):
            render_html(copy.deepcopy(res), traces(), None, "powerd", manifest())
            format_table(res)
            verification_table(res["verification"])
    assert json.dumps(res, sort_keys=True) == before


# --- the command line ---------------------------------------------------------------------------


def powerd(
    state: Path, *args: str, lang_env: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run_powerd(*args, state=state, env={i18n.ENV: lang_env})  # None: not set


def test_measure_and_report_in_korean_keep_the_json(tmp_path: Path) -> None:
    st = tmp_path / "st"
    r = powerd(
        st,
        "measure",
        "--lang",
        "ko",
        "--probe",
        "sim:constant,w=5",
        "--run",
        "r1",
        "--count",
        "10",
        "--out",
        str(tmp_path / "m"),
        "--quiet",
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(0.3)",
    )
    assert r.returncode == 0, r.stderr
    assert "에너지_j" in r.stdout and "실행 r1" in r.stdout
    assert 'lang="ko"' in (tmp_path / "m" / "r1.html").read_text()
    en = powerd(st, "report", "r1", "--out", str(tmp_path / "en"), "--lang", "en")
    ko = powerd(st, "report", "r1", "--out", str(tmp_path / "ko"), lang_env="ko")
    assert en.returncode == 0 and ko.returncode == 0, en.stderr + ko.stderr
    assert "energy_j" in en.stdout and "에너지_j" in ko.stdout and "보고서: " in ko.stdout
    en_json = json.loads((tmp_path / "en" / "r1.json").read_text())
    ko_json = json.loads((tmp_path / "ko" / "r1.json").read_text())
    assert en_json == ko_json
    assert numbers(en.stdout.splitlines()[2]) == numbers(ko.stdout.splitlines()[2])
    ko_page = (tmp_path / "ko" / "r1.html").read_text()
    assert 'lang="ko"' in ko_page and "소비 전력" in ko_page
    assert 'lang="en"' in (tmp_path / "en" / "r1.html").read_text()
    bad = powerd(st, "report", "r1", "--out", str(tmp_path / "x"), "--lang", "fr")
    assert bad.returncode == 2 and "unknown report language 'fr'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_verify_prints_korean_verdicts(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(
        'probes = ["sim:constant,w=20"]\nclaims = ["mean_power_w <= 25", "mean_power_w <= 15"]\n'
        "[trials]\nn = 1\n"
    )
    r = powerd(
        tmp_path / "st",
        "verify",
        str(tmp_path / "p.toml"),
        "--out",
        str(tmp_path / "out"),
        "--quiet",
        "--lang",
        "ko",  # after PROTOCOL.toml: parsed from CMD's remainder
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(0.25)",
    )
    assert r.returncode in (1, 3), r.stderr
    assert "검증" in r.stdout and "종합:" in r.stdout and "지지되지 않음" in r.stdout
    (page,) = (tmp_path / "out").glob("*.html")
    assert 'lang="ko"' in page.read_text()
    (res,) = (tmp_path / "out").glob("*.json")
    verdicts = {c["verdict"] for c in json.loads(res.read_text())["verification"]["claims"]}
    assert verdicts <= {"supported", "not supported", "inconclusive"}  # the JSON stays English


# --- powerd compare ----------------------------------------------------------------------------


def test_comparison_in_korean(tmp_path: Path) -> None:
    from powerd.compare import Selection, build_comparison
    from powerd.report.compare_html import render_compare_html
    from powerd.report.compare_text import format_compare
    from powerd.store import Store
    from tests.report.test_compare import sim_run

    with Store(tmp_path / "powerd.db") as store:
        a = sim_run(store, "a", 20.0, 0, 1000)
        b = sim_run(store, "b", 25.0, 20, 1000)
    old = copy.deepcopy(b)  # no stated uncertainty: unknown calls with a reason
    del old["phases"][0]["j_per_unit_uncertainty"]
    old["phases"][0]["uncertainty_j"] = None
    doc = build_comparison(
        [(Selection("a", None), a), (Selection("b", None), b), (Selection("old", None), old)]
    )
    before = json.dumps(doc, sort_keys=True)
    out = {}
    for lang in ("en", "ko"):
        with i18n.language(lang):
            out[lang] = (format_compare(doc), render_compare_html(doc, "powerd 0.1.0"))
    assert json.dumps(doc, sort_keys=True) == before
    ko_text, ko_page = out["ko"]
    shown, lang = visible(ko_page)
    assert lang == "ko"
    for word in ("유의함", "유의하지 않음", "판단 불가 (불확도 없음)", "판단 규칙: "):
        assert word in ko_text and word in shown, word
    data = dict(doc)
    data.pop("rule")
    data.pop("by")
    for p in data["pairs"]:
        for f in p["figures"].values():
            f.pop("call")
            f.pop("reason")
    words = {w for s in _strings(data) for w in re.findall(r"[A-Za-z_]+", s)}
    allowed = words | ALLOWED | {"token", "Ua", "Ub", "sqrt", "shared_channels"}
    for text in (shown, ko_text):
        leaked = set(re.findall(r"[A-Za-z][A-Za-z_]+", text)) - allowed
        assert leaked == set(), leaked
    en_text, en_page = out["en"]
    assert numbers(visible(en_page)[0]) == numbers(shown)
    assert numbers(en_text) == numbers(ko_text)
