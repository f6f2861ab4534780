"""``inbec dashboards build|check|install``: the Kibana and OpenSearch Dashboards objects."""

# No "from __future__ import annotations": typer reads the options' annotations at
# definition time, as in cli_export.
import logging
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from inbec_export.case import validate_case_id
from inbec_export.cli import (
    QuietOption,
    VerboseOption,
    _setup_logging,
    err_console,
    error_line,
    one_line_errors,
    out_console,
    safe,
)
from inbec_export.cli_export import CaCertOption, InsecureOption, PrefixOption, _secret_option
from inbec_export.dashboards import (
    ALL_CASES,
    DashboardError,
    build_objects,
    import_objects,
    to_ndjson,
    validate_space,
)
from inbec_export.dashboards_check import KIBANA, OPENSEARCH_DASHBOARDS, check_ndjson
from inbec_export.ecs.mappings import DEFAULT_PREFIX
from inbec_export.errors import UsageError
from inbec_export.sinks.search import Connection, validate_prefix

logger = logging.getLogger(__name__)

#: Default output file of ``inbec dashboards build``, per target.
DEFAULT_OUT = {
    KIBANA: Path("inbec-dashboards.ndjson"),
    OPENSEARCH_DASHBOARDS: Path("inbec-dashboards-osd.ndjson"),
}

#: Environment variables of the credentials (one set for both products).
ENV = "INBEC_DASHBOARDS"

dashboards_app = typer.Typer(
    help="Kibana and OpenSearch Dashboards objects of a case: build, check, install.",
    no_args_is_help=True,
)

OsdFlag = Annotated[
    bool,
    typer.Option(
        "--opensearch-dashboards", help="The OpenSearch Dashboards variant (no Lens there)."
    ),
]
CaseOption = Annotated[
    str | None,
    typer.Option("--case", help="Case id the data views cover (default: every case)."),
]


def _target(opensearch_dashboards: bool) -> str:
    return OPENSEARCH_DASHBOARDS if opensearch_dashboards else KIBANA


def _checked_objects(target: str, case: str | None, prefix: str) -> list[dict[str, Any]]:
    """The built saved objects; a build that fails the checker is refused."""
    case_id = validate_case_id(case) if case is not None else ALL_CASES
    objects = build_objects(target, case_id, validate_prefix(prefix))
    problems = check_ndjson(to_ndjson(objects), target)
    if problems:
        raise DashboardError(
            f"the built dashboards fail the check ({len(problems)} problem(s)): {problems[0]}"
        )
    return objects


@dashboards_app.command("build")
def build(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="NDJSON file to write (default inbec-dashboards.ndjson, "
            "inbec-dashboards-osd.ndjson for OpenSearch Dashboards).",
        ),
    ] = None,
    opensearch_dashboards: OsdFlag = False,
    case: CaseOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
) -> None:
    """Build the saved objects NDJSON from dashboards/ (checked before it is written)."""
    target = _target(opensearch_dashboards)
    path = out or DEFAULT_OUT[target]
    with one_line_errors():
        objects = _checked_objects(target, case, prefix)
    try:
        path.write_text(to_ndjson(objects), encoding="utf-8")
    except OSError as exc:
        error_line(f"cannot write {safe(path)}: {safe(exc.strerror)}")
        raise typer.Exit(1) from None
    out_console.print(f"wrote {len(objects)} saved objects to {safe(path)}", soft_wrap=True)


@dashboards_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="A saved objects NDJSON file.")],
    opensearch_dashboards: OsdFlag = False,
) -> None:
    """Check a saved objects NDJSON file as the import API reads it.

    Every charted field is also checked against the index templates. Exit 1 on any problem.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        error_line(f"cannot read {safe(file)}: {safe(exc)}")
        raise typer.Exit(2) from None
    problems = check_ndjson(text, _target(opensearch_dashboards))
    for problem in problems:
        out_console.print(safe(problem), soft_wrap=True, highlight=False)
    count = sum(1 for line in text.splitlines() if line.strip())
    if problems:
        out_console.print(f"{safe(file)}: {len(problems)} problem(s)", soft_wrap=True)
        raise typer.Exit(1)
    out_console.print(f"{safe(file)}: {count} objects, no problems", soft_wrap=True)


@dashboards_app.command("install")
def install(
    kibana: Annotated[
        str | None, typer.Option("--kibana", help="Kibana URL, e.g. https://localhost:5601.")
    ] = None,
    opensearch_dashboards: Annotated[
        str | None,
        typer.Option("--opensearch-dashboards", help="OpenSearch Dashboards URL (instead)."),
    ] = None,
    space: Annotated[
        str | None, typer.Option(help="Kibana space id (default: the default space).")
    ] = None,
    case: CaseOption = None,
    prefix: PrefixOption = DEFAULT_PREFIX,
    api_key: Annotated[str | None, _secret_option(f"{ENV}_API_KEY", "API key")] = None,
    user: Annotated[str | None, typer.Option(help="User name.", envvar=f"{ENV}_USER")] = None,
    password: Annotated[
        str | None, _secret_option(f"{ENV}_PASSWORD", "Password for --user")
    ] = None,
    bearer_token: Annotated[
        str | None, _secret_option(f"{ENV}_BEARER_TOKEN", "Bearer token")
    ] = None,
    ca_cert: CaCertOption = None,
    insecure: InsecureOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Import the dashboards into Kibana or OpenSearch Dashboards, overwriting.

    Prints one line per object the server did not import, then the count; exit 1 if any.
    """
    _setup_logging(verbose, quiet)
    with one_line_errors():
        target, url = _install_target(kibana, opensearch_dashboards)
        connection = Connection(
            url=url,
            api_key=api_key,
            user=user,
            password=password,
            bearer_token=bearer_token,
            ca_cert=ca_cert,
            verify_tls=not insecure,
        )
        space_id = validate_space(space)
        objects = _checked_objects(target, case, prefix)
        if not connection.verify_tls:
            err_console.print("[yellow]warning:[/yellow] TLS certificate verification is off")
        result = import_objects(target, connection, objects, space_id)
    for failure in result.failures:
        out_console.print(safe(failure.line()), soft_wrap=True, highlight=False)
    out_console.print(safe(result.line()), soft_wrap=True, highlight=False)
    if result.failures:
        raise typer.Exit(1)


def _install_target(kibana: str | None, opensearch_dashboards: str | None) -> tuple[str, str]:
    if (kibana is None) == (opensearch_dashboards is None):
        raise UsageError("give --kibana URL or --opensearch-dashboards URL (one of them)")
    option, target, url = (
        ("--kibana", KIBANA, kibana)
        if kibana is not None
        else ("--opensearch-dashboards", OPENSEARCH_DASHBOARDS, opensearch_dashboards or "")
    )
    if not re.match(r"^https?://[^/\s]+", url):
        raise UsageError(f"{option} {url!r}: give http:// or https:// and the host")
    return target, url
