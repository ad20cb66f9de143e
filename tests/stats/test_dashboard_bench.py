"""bench/dashboard.py and bench/console.py, small: they fill today's schema by COPY (a NOT NULL
field added to a model since, such as a checkpoint's role, once broke both without any test
noticing) and time every page and API call; their JSON lines keep their keys."""
import pytest
from django.db import connection

from tests.subprocesses import bench_run

pytestmark = pytest.mark.django_db


def test_the_dashboard_and_console_benches_fill_todays_schema_and_time_every_page():
    if connection.vendor != "postgresql":
        pytest.skip("the benches fill PostgreSQL by COPY")
    name = connection.settings_dict["NAME"]
    small = ("--judgements", "3000", "--items", "600", "--calls", "1")
    _, dashboard = bench_run("dashboard.py", *small, bench_db=f"{name}_bench_dash",
                             env={"BENCH_DASH_DB": f"{name}_bench_dash"})
    assert dashboard["judgements"] == 3000 and dashboard["endpoints"] >= 20
    assert dashboard["max_endpoint_ms"] > 0
    lines, console = bench_run("console.py", *small, bench_db=f"{name}_bench_console",
                               env={"BENCH_CONSOLE_DB": f"{name}_bench_console"})
    assert console["max_page_ms"] > 0
    assert any("/console/projects/" in line and "/rounds/" in line for line in lines)  # a round's page was timed
