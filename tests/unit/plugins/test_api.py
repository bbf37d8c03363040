"""The report viewer's pieces that need no API server (the server-side behaviour: tests/integration/test_report_viewer.py)."""

from __future__ import annotations

import subprocess
import sys

from airflow_mlops.plugins.api import CSP_SCRIPTS, CSP_STATIC, _under_base


def test_under_base_is_a_path_prefix_not_a_string_prefix(tmp_path):
    base = str(tmp_path / "reports")
    assert _under_base(f"{base}/validation/d/r/t/validation.html", base)
    assert _under_base(f"file://{base}/x.html", base)
    assert not _under_base(f"{base}-evil/x.html", base)
    assert not _under_base(base, base)
    assert not _under_base("/etc/passwd", base)
    assert _under_base("s3://bucket/reports/drift/x.html", "s3://bucket/reports/")
    assert not _under_base("s3://bucket/reports2/x.html", "s3://bucket/reports")
    assert not _under_base("gs://bucket/reports/x.html", "s3://bucket/reports")


def test_every_policy_is_a_sandbox_without_the_airflow_origin():
    for csp in (CSP_STATIC, CSP_SCRIPTS):
        directives = [d.strip() for d in csp.split(";")]
        assert directives[0].split()[0] == "sandbox" and "default-src 'none'" in directives
        assert "allow-same-origin" not in csp and "allow-top-navigation" not in csp
    assert "allow-scripts" not in CSP_STATIC and "script-src" not in CSP_STATIC
    assert "connect-src 'none'" in CSP_SCRIPTS


def test_loading_the_plugin_does_not_build_the_app():
    """Every task process imports plugins: the API server's security module and FastAPI stay out of them."""
    code = (
        "import sys, airflow_mlops.plugins as p; "
        "assert type(p.MlopsPlugin.fastapi_apps[0]['app']).__name__ == 'LazyApp'; "
        "print('airflow.api_fastapi.core_api.security' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr[-2000:]
