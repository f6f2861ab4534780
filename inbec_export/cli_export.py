"""``inbec export elasticsearch|opensearch``: a case folder (or fresh evidence) to a server."""

# No "from __future__ import annotations": the command's options are built per server,
# so its annotations must be evaluated where the function is defined.
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from inbec_export.case import validate_case_id
from inbec_export.cli import (
    DEFAULT_OUT,
    AllowlistOption,
    AnalysisOptions,
    AuthFailOption,
    LegitFileOption,
    LegitOption,
    QuietOption,
    SubjectOption,
    VerboseOption,
    WorkersOption,
    _setup_logging,
    err_console,
    error_line,
    one_line_errors,
    out_console,
    run_analysis,
    safe,
)
from inbec_export.ecs.mappings import DEFAULT_PREFIX
from inbec_export.errors import UsageError, check_server_url
from inbec_export.sinks.search import (
    FLAVOURS,
    Connection,
    ExportResult,
    check_case_folder,
    check_case_id,
    export_case,
)
from inbec_export.sinks.timesketch import (
    CLIENT_CONFIG_NAME,
    ClientConfig,
    TimesketchTarget,
    export_timesketch,
    read_client_config,
)

export_app = typer.Typer(
    help="Send a case to a search server (documents keep their ids: re-runs add nothing, "
    "changed documents are replaced).",
    no_args_is_help=True,
)

EvidenceArgument = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Evidence to analyze first (into --out); leave out with --from-case.",
        metavar="[EVIDENCE]",
        show_default=False,
    ),
]
FromCaseOption = Annotated[
    Path | None, typer.Option(help="An existing case folder to send, without parsing again.")
]
OutOption = Annotated[
    Path, typer.Option("--out", "-o", help="Case folder to write when analyzing evidence.")
]
CaseOption = Annotated[
    str | None,
    typer.Option("--case", help="Case id (default: the case folder's); part of index names."),
]
PrefixOption = Annotated[str, typer.Option(help="Prefix of index and template names.")]
CaCertOption = Annotated[
    Path | None, typer.Option(help="CA bundle (PEM) that signed the server's certificate.")
]
InsecureOption = Annotated[
    bool, typer.Option(help="Do not verify the server's TLS certificate (not recommended).")
]
DeleteStaleOption = Annotated[
    bool,
    typer.Option(
        help="Delete the documents of the case's indices that are not in this case folder "
        "(left by an earlier analysis). Not when other case folders of the same case were "
        "exported into these indices: theirs would go too.",
    ),
]


def _url_option(env: str) -> Any:
    return typer.Option(help="Server URL, e.g. https://localhost:9200.", envvar=f"{env}_URL")


def _secret_option(env: str, what: str) -> Any:
    return typer.Option(help=f"{what} (or ${env}).", envvar=env, show_envvar=False)


def _export(
    flavour_name: str,
    evidence: list[Path] | None,
    from_case: Path | None,
    connection: Connection,
    case_id: str | None,
    prefix: str,
    analysis: AnalysisOptions,
    delete_stale: bool = False,
) -> None:
    flavour = FLAVOURS[flavour_name]
    case_dir = _case_folder(evidence, from_case, analysis, case_id)
    summary = check_case_folder(case_dir)
    case = validate_case_id(case_id or str(summary.get("case", {}).get("id") or "case"))
    if not connection.verify_tls:
        err_console.print("[yellow]warning:[/yellow] TLS certificate verification is off")
    result = _with_progress(
        flavour_name, connection, case_dir, case, prefix, analysis.quiet, delete_stale
    )
    for name, action in result.templates.items():
        if not analysis.quiet:
            out_console.print(f"index template {name}: {action}")
    if result.rejected:
        err_console.print(
            f"[yellow]{result.rejected} document(s) rejected[/yellow]: reasons in "
            f"{safe(case_dir / 'rejected.ndjson')}"
        )
    left = result.stale - result.deleted
    if left:
        err_console.print(
            f"[yellow]warning:[/yellow] {left} document(s) of case {case!r} in the indices "
            "are not in this case folder (from an earlier analysis, or another case folder "
            "of the case): --delete-stale removes them",
            soft_wrap=True,
            highlight=False,
        )
    if result.stopped:
        error_line(f"{safe(result.stopped)}")
    out_console.print(f"{flavour.name}: {result.line()}", soft_wrap=True)
    if result.rejected or result.unsent:
        raise typer.Exit(1)


def _case_folder(
    evidence: list[Path] | None,
    from_case: Path | None,
    analysis: AnalysisOptions,
    case_id: str | None,
) -> Path:
    if evidence and from_case is not None:
        raise UsageError("give evidence or --from-case, not both")
    if from_case is not None:
        if case_id is not None:
            check_case_id(from_case, check_case_folder(from_case), validate_case_id(case_id))
        return from_case
    if not evidence:
        raise UsageError("give evidence to analyze, or --from-case with a case folder")
    run_analysis(evidence, analysis)
    return analysis.out


def _with_progress(
    flavour_name: str,
    connection: Connection,
    case_dir: Path,
    case_id: str,
    prefix: str,
    quiet: bool,
    delete_stale: bool,
) -> ExportResult:
    columns = (
        TextColumn(f"{FLAVOURS[flavour_name].name}"),
        BarColumn(bar_width=None),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} docs/s"),
        TimeElapsedColumn(),
    )
    started = time.monotonic()
    live = not quiet and err_console.is_terminal
    with Progress(*columns, console=err_console, transient=True, disable=not live) as progress:
        task = progress.add_task("", total=None, rate="0")

        def notify(done: int, total: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-6)
            progress.update(task, completed=done, total=total, rate=f"{rate:.0f}")

        return export_case(
            FLAVOURS[flavour_name], connection, case_dir, case_id, prefix, notify, delete_stale
        )


def _command(flavour_name: str, env: str) -> None:
    title = FLAVOURS[flavour_name].name

    def command(
        evidence: EvidenceArgument = None,
        from_case: FromCaseOption = None,
        url: Annotated[str, _url_option(env)] = "http://127.0.0.1:9200",
        api_key: Annotated[str | None, _secret_option(f"{env}_API_KEY", "API key")] = None,
        user: Annotated[str | None, typer.Option(help="User name.", envvar=f"{env}_USER")] = None,
        password: Annotated[
            str | None, _secret_option(f"{env}_PASSWORD", "Password for --user")
        ] = None,
        bearer_token: Annotated[
            str | None, _secret_option(f"{env}_BEARER_TOKEN", "Bearer token")
        ] = None,
        ca_cert: CaCertOption = None,
        insecure: InsecureOption = False,
        case_id: CaseOption = None,
        prefix: PrefixOption = DEFAULT_PREFIX,
        delete_stale: DeleteStaleOption = False,
        out: OutOption = DEFAULT_OUT,
        legit: LegitOption = None,
        legit_file: LegitFileOption = None,
        allowlist: AllowlistOption = None,
        subject_pattern: SubjectOption = None,
        auth_fail: AuthFailOption = None,
        workers: WorkersOption = 1,
        quiet: QuietOption = False,
        verbose: VerboseOption = False,
    ) -> None:
        _setup_logging(verbose, quiet)
        analysis = AnalysisOptions(
            legit,
            legit_file,
            allowlist,
            out,
            case_id or "case",
            subject_pattern,
            auth_fail,
            quiet,
            workers=workers,
        )
        with one_line_errors():
            connection = Connection(
                url=url,
                api_key=api_key,
                user=user,
                password=password,
                bearer_token=bearer_token,
                ca_cert=ca_cert,
                verify_tls=not insecure,
            )
            _export(
                flavour_name,
                evidence,
                from_case,
                connection,
                case_id,
                prefix,
                analysis,
                delete_stale,
            )

    command.__doc__ = (
        f"Send a case to {title}: installs the index templates, then bulk-indexes every "
        "document with its deterministic id (documents already there are left alone when "
        "unchanged and replaced when changed, never doubled; documents of the case that "
        "are not in the case folder are counted, and deleted with --delete-stale). Exit 1 "
        "if any document was rejected or left unsent."
    )
    export_app.command(flavour_name)(command)


#: Where ``inbec export timesketch`` goes when neither --url nor a client config says.
DEFAULT_TIMESKETCH_URL = "http://127.0.0.1:5000"

_command("elasticsearch", "INBEC_ES")
_command("opensearch", "INBEC_OPENSEARCH")


@export_app.command("timesketch")
def timesketch(
    evidence: EvidenceArgument = None,
    from_case: FromCaseOption = None,
    url: Annotated[
        str | None,
        typer.Option(
            help="Timesketch URL (default: the client config's, else http://127.0.0.1:5000).",
            envvar="INBEC_TIMESKETCH_URL",
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            help="User name (default: the client config's).", envvar="INBEC_TIMESKETCH_USER"
        ),
    ] = None,
    client_config: Annotated[
        Path | None,
        typer.Option(
            help="The Timesketch clients' config file for URL and user "
            "(default: ~/.timesketchrc when it exists).",
        ),
    ] = None,
    password: Annotated[
        str, _secret_option("INBEC_TIMESKETCH_PASSWORD", "Password for --user")
    ] = "",
    sketch: Annotated[int | None, typer.Option(help="Id of the sketch to add to.")] = None,
    sketch_name: Annotated[
        str | None, typer.Option(help="Name of the sketch (created if missing).")
    ] = None,
    timeline_name: Annotated[
        str | None, typer.Option(help="Timeline name (default: case and evidence).")
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for Timesketch to index the timeline.")
    ] = 600.0,
    insecure: InsecureOption = False,
    case_id: CaseOption = None,
    out: OutOption = DEFAULT_OUT,
    legit: LegitOption = None,
    legit_file: LegitFileOption = None,
    allowlist: AllowlistOption = None,
    subject_pattern: SubjectOption = None,
    auth_fail: AuthFailOption = None,
    workers: WorkersOption = 1,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Send the case's timeline to Timesketch (one event per time a message carries, one
    per finding), wait until it is indexed and count it back. Exit 1 on a mismatch."""
    _setup_logging(verbose, quiet)
    analysis = AnalysisOptions(
        legit,
        legit_file,
        allowlist,
        out,
        case_id or "case",
        subject_pattern,
        auth_fail,
        quiet,
        workers=workers,
    )
    with one_line_errors():
        config = _timesketch_client_config(client_config)
        url = check_server_url(url or config.url or DEFAULT_TIMESKETCH_URL)
        user = user or config.username
        if not user:
            raise UsageError("give --user (or $INBEC_TIMESKETCH_USER, or a client config)")
        verify_tls = not insecure and config.verify_tls is not False
        target = TimesketchTarget(
            url=url,
            username=user,
            password=password,
            sketch_id=sketch,
            sketch_name=sketch_name,
            timeline_name=timeline_name,
            verify_tls=verify_tls,
        )
        if not verify_tls:
            err_console.print("[yellow]warning:[/yellow] TLS certificate verification is off")
        case_dir = _case_folder(evidence, from_case, analysis, case_id)
        with err_console.status("Timesketch", spinner="dots") as status:

            def notify(text: str) -> None:
                if not quiet:
                    status.update(f"Timesketch: {text}")

            result = export_timesketch(target, case_dir, timeout, notify)
    out_console.print(f"Timesketch: {safe(result.line())}", soft_wrap=True)


def _timesketch_client_config(path: Path | None) -> ClientConfig:
    if path is not None:
        return read_client_config(path)
    default = Path.home() / CLIENT_CONFIG_NAME
    return read_client_config(default) if default.is_file() else ClientConfig()
