"""`acl check` / `acl run` as a user runs them: real subprocesses."""

from __future__ import annotations

import argparse
import json
import subprocess

from acl.cli import register
from tests.support.procs import PYTHON, ROOT

LEGACY = {
    "cust_id": 17, "cust_nm": "DOE, Jane", "email_addr": "jane.doe17@example.com",
    "phone_no": "555-0100", "addr_line1": "1 Main St", "addr_city": "Springfield",
    "addr_zip": "12345", "status_cd": "A", "created_ts": "20240102030405", "tenant_id": "acme",
}  # fmt: skip


def _acl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "acl.cli", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_lists_the_shipped_translators():
    proc = _acl("check", "--dir", "acl/translators")
    assert proc.returncode == 0, proc.stderr
    assert "customers" in proc.stdout and "catalog" in proc.stdout
    assert "2 translator(s) valid" in proc.stdout


def test_check_reports_problems_and_exits_1(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "record:\n  fields:\n    - {legacy: a, new: 'b[', type: string}\n"
    )
    proc = _acl("check", "--dir", str(tmp_path))
    assert proc.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}:3: record.fields[0].new: invalid JMESPath" in proc.stderr


def test_run_to_new_and_back(tmp_path):
    sample = tmp_path / "customer.json"
    sample.write_text(json.dumps(LEGACY))
    proc = _acl("run", "customers", "--to", "new", str(sample))
    assert proc.returncode == 0, proc.stderr
    new = json.loads(proc.stdout)
    assert new["name"] == {"given": "Jane", "family": "Doe"} and new["active"] is True
    back = _acl("run", "customers", "--to", "legacy", "-", stdin=json.dumps(new))
    assert json.loads(back.stdout) == LEGACY


def test_run_prints_the_translation_error(tmp_path):
    sample = tmp_path / "customer.json"
    sample.write_text(json.dumps({**LEGACY, "status_cd": "Z"}))
    proc = _acl("run", "customers", "--to", "new", str(sample))
    assert proc.returncode == 1
    error = json.loads(proc.stderr)["error"]
    assert error["path"] == "$.status_cd" and error["direction"] == "to_new"
    assert "'Z'" in error["message"]


def test_run_request_and_response_modes(tmp_path):
    proc = _acl(
        "run", "customers", "--to", "new", "-", "--request",
        "GET /api/customers?page=3&page_size=10&ordering=-created", stdin="null",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["path"] == "/v1/customers"
    assert ["order_by", "-created_at"] in out["query"] and ["limit", "10"] in out["query"]
    err = json.dumps({"error": "not_found", "detail": "customer 9 does not exist"})
    proc = _acl(
        "run", "customers", "--to", "legacy", "-", "--response", "GET /api/customers/9",
        "--status", "404", stdin=err,
    )  # fmt: skip
    assert json.loads(proc.stdout) == {
        "status": 404,
        "body": {
            "error": {"code": "NOT_FOUND", "message": "No customer with cust_id=9 for this tenant."}
        },
    }


def test_unknown_translator_name():
    proc = _acl("run", "nobody", "--to", "new", "-", stdin="{}")
    assert proc.returncode == 2
    assert "no translator named 'nobody'" in proc.stderr and "customers" in proc.stderr


def test_register_mounts_under_a_parent_cli():
    parser = argparse.ArgumentParser(prog="strangler")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["acl", "run", "customers", "--to", "new", "x.json"])
    assert args.name == "customers" and args.to == "new" and callable(args.func)
    args = parser.parse_args(["acl", "check"])
    assert args.func(args) == 0


def test_check_samples_round_trip(tmp_path):
    (tmp_path / "t.yaml").write_text(
        "record:\n  fields:\n"
        "    - {legacy: code, new: code, convert: {case: {legacy: keep, new: lower}}}\n"
        "    - {legacy: n, new: n, type: integer}\n"
    )
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "t.json").write_text(
        json.dumps([{"code": "ab", "n": 1}, {"code": "AB", "n": 2}, {"n": 3}])
    )
    proc = _acl("check", "--dir", str(tmp_path), "--samples", str(samples))
    assert proc.returncode == 1
    assert "round trip t: 1/3 samples ok" in proc.stdout
    assert "t.json[1]: round trip changed code: 'AB' -> 'ab'" in proc.stderr
    assert "t.json[2]: to_new failed at $.code: missing required field" in proc.stderr
    (samples / "t.json").write_text(json.dumps([{"code": "ab", "n": 1}]))
    proc = _acl("check", "--dir", str(tmp_path), "--samples", str(samples))
    assert proc.returncode == 0 and "round trip t: 1/1 samples ok" in proc.stdout


def test_check_samples_from_a_folder_that_is_not_there_fails_rather_than_passing(tmp_path):
    # A mistyped --samples checked nothing and said exit 0, as if every round trip held.
    proc = _acl("check", "--dir", "acl/translators", "--samples", str(tmp_path / "sampels"))
    assert proc.returncode == 1, proc.stdout
    assert f"--samples {tmp_path / 'sampels'}: not a directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_on_a_sample_it_cannot_read_says_which_and_why_without_a_traceback(tmp_path):
    (tmp_path / "latin1.json").write_bytes(b'{"cust_nm": "M\xdcLLER, Jo"}')
    cases = {
        str(tmp_path / "missing.json"): "no such file",
        str(tmp_path): "is a directory",
        str(tmp_path / "latin1.json"): "not UTF-8 text",
    }
    for file, reason in cases.items():
        proc = _acl("run", "customers", "--to", "new", file)
        assert proc.returncode == 1, (file, proc.stdout)
        assert proc.stderr.startswith(f"{file}: {reason}"), proc.stderr
        assert "Traceback" not in proc.stderr


def test_check_reads_the_translators_beside_routes_yaml_by_default(tmp_path):
    """The proxy loads ./acl/translators beside routes.yaml when it exists: so does
    `acl check` without --dir (it checked the built-in ones, and said all was well)."""
    local = tmp_path / "acl" / "translators"
    local.mkdir(parents=True)
    (local / "bad.yaml").write_text("record:\n  fields:\n    - {legacy: a, new: 'b[', type: x}\n")
    proc = subprocess.run(
        [PYTHON, "-m", "acl.cli", "check"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "bad.yaml" in proc.stderr, proc.stdout + proc.stderr
    builtin = subprocess.run(
        [PYTHON, "-m", "acl.cli", "check"],
        cwd=tmp_path.parent,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert builtin.returncode == 0 and "2 translator(s) valid" in builtin.stdout, builtin.stderr


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """`strangler acl run ... | head -3`: the pipe closes before the output is written."""
    sample = tmp_path / "customer.json"
    sample.write_text(json.dumps(LEGACY))
    proc = subprocess.Popen(
        [PYTHON, "-m", "proxy.cli", "acl", "run", "customers", "--to", "new", str(sample)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the command writes anything
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()
    assert proc.returncode == 1
