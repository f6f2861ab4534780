"""The ``inbec`` command line: wires readers, detections, mapping and sinks together."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from inbec_export import __version__
from inbec_export.case import (
    CaseContext,
    clean_domain,
    compile_subject_pattern,
    parse_auth_failures,
    validate_case_id,
)
from inbec_export.domains import is_usable_domain
from inbec_export.enrichment.virustotal import (
    VT_REQUESTS_PER_DAY,
    VT_REQUESTS_PER_MINUTE,
    VT_URL,
)
from inbec_export.enrichment.whois import WHOIS_TIMEOUT_SECONDS
from inbec_export.errors import InbecError, UsageError
from inbec_export.sinks.case_folder import check_out_dir

if TYPE_CHECKING:
    from inbec_export.enrichment import EnrichmentConfig

app = typer.Typer(
    name="inbec",
    help="Business email compromise evidence (PST/OST, MSG, EML, mbox) to ECS findings.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)

#: Columns of output that goes to a file or a pipe (a log, CI), where nothing wraps it.
PIPE_WIDTH = 200


def _console(stderr: bool = False) -> Console:
    """A console whose lines are never broken by us: a terminal wraps them itself, and a
    file or pipe keeps them whole for grep (tables get :data:`PIPE_WIDTH` columns)."""
    # emoji=False: an evidence subject ":skull:" is shown as written, not as a picture.
    console = Console(stderr=stderr, soft_wrap=True, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


out_console = _console()
err_console = _console(stderr=True)
logger = logging.getLogger("inbec_export")

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")

#: Line breaks and tabs: a space, so that one message stays one line (a file name with a
#: newline cannot forge a line of its own).
_BREAKS = re.compile(r"[\t\n\r\x85\u2028\u2029]")


def safe(text: object) -> str:
    """Evidence text for the terminal: control and escape characters removed, markup escaped."""
    from rich.markup import escape

    return escape(_CONTROL.sub("", _BREAKS.sub(" ", str(text))))


class _PlainText(logging.Filter):
    """Strips control and escape characters from log lines: they quote evidence."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _CONTROL.sub("", _BREAKS.sub(" ", record.getMessage()))
        record.args = None
        return True


def error_line(text: str) -> None:
    """An error as one line (never wrapped: scripts and people grep for it)."""
    err_console.print(f"[red]error:[/red] {text}", soft_wrap=True, highlight=False)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turns the tool's own errors into one ``error:`` line and the documented exit code:
    2 for a usage error, 1 for any other :class:`InbecError`."""
    try:
        yield
    except UsageError as exc:
        error_line(safe(exc))
        raise typer.Exit(2) from None
    except InbecError as exc:
        error_line(safe(exc))
        raise typer.Exit(1) from None


class _LineHandler(logging.Handler):
    """One log record, one line on stderr (``warning: file [item]: reason``), never
    wrapped, so that scripts and people can grep it; printed through the rich console so
    that it stays above a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        prefix = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        err_console.print(prefix + text, soft_wrap=True, markup=False, highlight=False)


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    handler = _LineHandler()
    handler.addFilter(_PlainText())
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
    # Library chatter names no evidence file or says again, with a traceback, what our
    # own one-line error says ("Encoding property not found", extract-msg's CRITICAL "not
    # an MSG file", the HTTP clients' retries): our readers and sinks report what matters.
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.CRITICAL + 1)


#: Loggers of libraries that stay silent unless --verbose.
QUIET_LIBRARIES = (
    "extract_msg",
    "olefile",
    "RTFDE",
    "compressed_rtf",
    "tzlocal",
    "elastic_transport",
    "elasticsearch",
    "opensearch",
    "opensearchpy",
    "urllib3",
    "requests",
    "timesketch_api_client",
    "timesketch_import_client",
    "whois",
)


def _read_domain_file(path: Path) -> list[str]:
    """Domains of a ``--legit-file``/list file: one a line, ``#`` comments; UTF-8 (with or
    without a byte order mark) or UTF-16 with one, as Windows editors save "Unicode"."""
    if not path.is_file():
        raise UsageError(f"cannot read {path}: not a regular file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        lines = data.decode(encoding).splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {path}: not UTF-8 or UTF-16 text") from None
    domains = []
    for number, line in enumerate(lines, start=1):
        domain = line.split("#", 1)[0].strip()
        if domain and not is_usable_domain(clean_domain(domain)):
            raise UsageError(
                f"{path}, line {number}: {domain!r} is not a domain name: give the registrable "
                "domain with its suffix, e.g. acme-corp.com"
            )
        if domain:
            domains.append(domain)
    return domains


def _version(value: bool) -> None:
    if value:
        out_console.print(f"inbec-export {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Read BEC evidence, find lookalike domains, spoofing and thread intrusion, and write
    ECS documents, timelines and a summary into a case folder."""


LegitOption = Annotated[
    list[str] | None,
    typer.Option("--legit", "-l", help="A legitimate domain of the case (repeatable)."),
]
LegitFileOption = Annotated[
    Path | None, typer.Option(help="File of legitimate domains, one per line, # comments.")
]
AllowlistOption = Annotated[
    list[str] | None,
    typer.Option(help="A known partner domain never flagged as a lookalike (repeatable)."),
]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Case folder to write.")]
CaseOption = Annotated[
    str, typer.Option("--case", help="Case id (a-z, 0-9, - and _), used in index names.")
]
SubjectOption = Annotated[
    str | None,
    typer.Option(help="Regular expression; matching messages go to subject-matches.csv."),
]
AuthFailOption = Annotated[
    list[str] | None,
    typer.Option(
        help="Auth results that count as failures, e.g. spf=fail (repeatable; replaces the "
        "default for that method: spf=fail,softfail dkim=fail dmarc=fail compauth=fail)."
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Errors only.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
WhoisOption = Annotated[
    bool, typer.Option("--whois", help="Look lookalike domains up in WHOIS (network).")
]
WhoisServerOption = Annotated[
    str | None,
    typer.Option(help="Ask this WHOIS server (HOST:PORT) instead of each registry's."),
]
WhoisTimeoutOption = Annotated[
    float, typer.Option(help="Seconds to wait for a WHOIS server.", min=0.1)
]
VirusTotalOption = Annotated[
    bool,
    typer.Option(
        "--virustotal", help="Look lookalike domains and global IPs up in VirusTotal (network)."
    ),
]
VirusTotalKeyOption = Annotated[
    str | None,
    typer.Option(
        "--virustotal-key",
        help="VirusTotal API key (or $VT_API_KEY).",
        envvar="VT_API_KEY",
        show_envvar=False,
        show_default=False,
    ),
]
VirusTotalUrlOption = Annotated[
    str, typer.Option("--virustotal-url", help="VirusTotal API address.")
]
VirusTotalPerMinuteOption = Annotated[
    int, typer.Option("--virustotal-per-minute", help="VirusTotal requests a minute.", min=1)
]
VirusTotalPerDayOption = Annotated[
    int, typer.Option("--virustotal-per-day", help="VirusTotal requests a day.", min=1)
]
GeoIpOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--geoip-db", help="MaxMind City/Country or ASN database file, offline (repeatable)."
    ),
]
#: Most ``--workers`` accepted.
MAX_WORKERS = 64

WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        help="Evidence files read at the same time, in worker processes (same results).",
        min=1,
        # Each worker is a process with a file open: past the processors, more only
        # cost memory; a slip of the keyboard must not start thousands.
        max=MAX_WORKERS,
    ),
]
DEFAULT_OUT = Path("inbec-case")


@dataclass(frozen=True)
class AnalysisOptions:
    """The options of an analysis run, shared by ``analyze`` and the export commands."""

    legit: list[str] | None
    legit_file: Path | None
    allowlist: list[str] | None
    out: Path
    case_id: str
    subject_pattern: str | None
    auth_fail: list[str] | None
    quiet: bool
    #: The lookups to make at the end of the run (None: none, and no network use).
    enrichment: EnrichmentConfig | None = None
    #: Evidence files read at the same time (the case folder is the same whatever it is).
    workers: int = 1


def enrichment_config(
    whois: bool,
    whois_server: str | None,
    whois_timeout: float,
    virustotal: bool,
    virustotal_key: str | None,
    virustotal_url: str,
    virustotal_per_minute: int,
    virustotal_per_day: int,
    geoip_db: list[Path] | None,
) -> EnrichmentConfig | None:
    """The enrichment options as a config (None when none is on); usage errors exit 2."""
    from inbec_export.enrichment import EnrichmentConfig
    from inbec_export.enrichment.virustotal import VirusTotalConfig
    from inbec_export.enrichment.whois import WhoisConfig, parse_server

    if whois_server is not None and not whois:
        raise UsageError("--whois-server is used only with --whois")
    if virustotal and not (virustotal_key or "").strip():
        raise UsageError("--virustotal needs an API key: set VT_API_KEY or give --virustotal-key")
    missing = [str(p) for p in geoip_db or [] if not p.is_file()]
    if missing:
        raise UsageError(f"--geoip-db: no such file: {', '.join(missing)}")
    config = EnrichmentConfig(
        whois=WhoisConfig(
            server=parse_server(whois_server) if whois_server else None, timeout=whois_timeout
        )
        if whois
        else None,
        virustotal=VirusTotalConfig(
            api_key=(virustotal_key or "").strip(),
            url=virustotal_url,
            per_minute=virustotal_per_minute,
            per_day=virustotal_per_day,
        )
        if virustotal
        else None,
        geoip_databases=tuple(geoip_db or ()),
    )
    return config if config.enabled else None


def _refuse_empty(evidence: list[Path], out: Path) -> None:
    """Refuse, before anything is written, evidence folders that hold no file at all."""
    from inbec_export.readers import walk_inputs

    if next(walk_inputs(evidence, out), None) is None:
        raise UsageError(
            f"no files in {', '.join(map(str, evidence))}: nothing to read (nothing was written)"
        )


def run_analysis(evidence: list[Path], options: AnalysisOptions) -> dict[str, Any]:
    """Analyze ``evidence`` into ``options.out``; usage problems exit 2, others 1."""
    with one_line_errors():
        case = _build_case(
            evidence,
            options.out,
            options.legit,
            options.legit_file,
            options.allowlist,
            options.case_id,
            options.subject_pattern,
            options.auth_fail,
        )
        _refuse_empty(evidence, options.out)
        summary = _run(
            evidence, case, options.out, options.quiet, options.enrichment, options.workers
        )
    totals = summary["totals"]
    if totals["evidence_files"] == 0:
        found = totals["files_skipped"] + totals["items_failed"]
        error_line(
            f"no evidence found in {safe(', '.join(map(str, evidence)))} "
            "(PST/OST, MSG, EML or mbox, recognised by content); "
            f"{safe(options.out / 'summary.json')} lists the {found} "
            f"file{'s' if found != 1 else ''} skipped or failed"
        )
        raise typer.Exit(2)
    if not options.quiet:
        print_summary(summary, options.out)
    return summary


@app.command()
def analyze(
    evidence: Annotated[
        list[Path],
        typer.Argument(
            help="Evidence files or folders (walked recursively); any mix.",
            metavar="EVIDENCE",
        ),
    ],
    legit: LegitOption = None,
    legit_file: LegitFileOption = None,
    allowlist: AllowlistOption = None,
    out: OutOption = DEFAULT_OUT,
    case_id: CaseOption = "case",
    subject_pattern: SubjectOption = None,
    auth_fail: AuthFailOption = None,
    whois: WhoisOption = False,
    whois_server: WhoisServerOption = None,
    whois_timeout: WhoisTimeoutOption = WHOIS_TIMEOUT_SECONDS,
    virustotal: VirusTotalOption = False,
    virustotal_key: VirusTotalKeyOption = None,
    virustotal_url: VirusTotalUrlOption = VT_URL,
    virustotal_per_minute: VirusTotalPerMinuteOption = VT_REQUESTS_PER_MINUTE,
    virustotal_per_day: VirusTotalPerDayOption = VT_REQUESTS_PER_DAY,
    geoip_db: GeoIpOption = None,
    workers: WorkersOption = 1,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Analyze evidence and write a case folder (no server needed).

    Exit codes: 0 done (also when there are findings), 2 usage error, 1 unexpected failure,
    130 or 143 stopped by Ctrl-C or SIGTERM (the case folder is marked incomplete).
    """
    _setup_logging(verbose, quiet)
    with one_line_errors():
        enrichment = enrichment_config(
            whois,
            whois_server,
            whois_timeout,
            virustotal,
            virustotal_key,
            virustotal_url,
            virustotal_per_minute,
            virustotal_per_day,
            geoip_db,
        )
    options = AnalysisOptions(
        legit,
        legit_file,
        allowlist,
        out,
        case_id,
        subject_pattern,
        auth_fail,
        quiet,
        enrichment,
        workers,
    )
    run_analysis(evidence, options)


def _build_case(
    evidence: list[Path],
    out: Path,
    legit: list[str] | None,
    legit_file: Path | None,
    allowlist: list[str] | None,
    case_id: str,
    subject_pattern: str | None,
    auth_fail: list[str] | None,
) -> CaseContext:
    missing = [str(p) for p in evidence if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    check_out_dir(out, evidence)
    domains = list(legit or [])
    if legit_file is not None:
        domains += _read_domain_file(legit_file)
    pattern = None
    if subject_pattern is not None:
        pattern = compile_subject_pattern(subject_pattern)
    case = CaseContext(
        case_id=validate_case_id(case_id),
        legit_domains=tuple(domains),
        allowlist=tuple(allowlist or ()),
        subject_pattern=pattern,
    )
    if auth_fail:
        case.auth_failures = {**case.auth_failures, **parse_auth_failures(auth_fail)}
    if not case.legit_domains:
        logger.warning(
            "no legitimate domains given (--legit/--legit-file): lookalike, impersonation "
            "and thread-intrusion rules have nothing to compare with"
        )
    return case


def _run(
    evidence: list[Path],
    case: CaseContext,
    out: Path,
    quiet: bool,
    enrichment: EnrichmentConfig | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    from inbec_export.pipeline import analyze as run_analysis

    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[messages]}[/bold] messages"),
        TextColumn("{task.fields[failures]} failed"),
        BarColumn(bar_width=None),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    live = not quiet and err_console.is_terminal
    with Progress(*columns, console=err_console, transient=True, disable=not live) as progress:
        task = progress.add_task("", total=None, messages=0, failures=0)
        counts = {"message": 0, "failure": 0}

        def notify(event: str, detail: str) -> None:
            _stop_if_signalled()
            if event in counts:
                counts[event] += 1
            if event == "file" or counts["message"] % 50 == 0 or event == "failure":
                progress.update(
                    task,
                    description=safe(Path(detail).name if event == "file" else ""),
                    messages=counts["message"],
                    failures=counts["failure"],
                )

        return run_analysis(evidence, case, out, notify, enrichment, workers)


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, show_edge=False, title_justify="left")
    for column in columns:
        # Indicators are never cut short: long values wrap.
        table.add_column(column, overflow="fold")
    return table


def print_summary(summary: dict[str, Any], out: Path) -> None:
    """The terminal summary: what was read, what failed, what was found, where it is."""
    totals = summary["totals"]
    table = _table("Evidence", "files", "messages", "written", "non-mail", "failed", "skipped")
    table.add_row(
        str(totals["evidence_files"]),
        str(totals["messages_read"]),
        str(totals["messages_written"]),
        str(totals["non_mail_items"]),
        str(totals["items_failed"]),
        str(totals["files_skipped"]),
    )
    out_console.print(table)
    if summary["failures"]:
        whole = totals["files_failed"]
        items = totals["items_failed"] - whole
        parts = [f"{whole} whole file{'s' if whole != 1 else ''}" if whole else ""]
        parts.append(f"{items} single item{'s' if items != 1 else ''}" if items > 0 else "")
        out_console.print(
            f"[yellow]{totals['items_failed']} failed[/yellow] "
            f"({', '.join(part for part in parts if part)}):"
        )
        for failure in summary["failures"][:10]:
            item = f" [{failure['item']}]" if failure["item"] else ""
            out_console.print(f"  {safe(failure['file'])}{safe(item)}: {safe(failure['reason'])}")
        if totals["items_failed"] > 10:
            out_console.print(f"  ... all of them in {safe(out / 'failures.ndjson')}")
    if not summary["findings_by_rule"]:
        out_console.print("No findings.")
    else:
        rules = _table("Findings", "rule", "count")
        for rule_id, count in summary["findings_by_rule"].items():
            rules.add_row(rule_id, str(count))
        out_console.print(rules)
    if summary["lookalike_domains"]:
        domains = _table(
            "Lookalike domains", "domain", "imitates", "technique", "messages", "first seen"
        )
        for item in summary["lookalike_domains"]:
            shown = [h for h in item.get("hosts") or [] if h != item["domain"]]
            domains.add_row(
                safe(item["domain"] + (f" ({', '.join(shown[:3])})" if shown else "")),
                safe(item["imitates"]),
                safe(", ".join(item["techniques"] or [])),
                str(item["message_count"]),
                safe(item["first_seen"] or ""),
            )
        out_console.print(domains)
    key = summary.get("key_findings") or []
    if key:
        out_console.print("[bold]Critical and high findings[/bold]")
        for finding in key[:15]:
            colour = "red" if finding["severity"] == "critical" else "yellow"
            out_console.print(
                f"  [{colour}]{finding['severity']}[/{colour}] {finding['rule_id']}: "
                f"{safe(finding['reason'])}",
                highlight=False,
            )
        if len(key) > 15:
            out_console.print(f"  ... {len(key) - 15} more in summary.json and findings.ndjson")
    _print_enrichment(summary.get("enrichment") or {})
    by_severity = summary.get("findings_by_severity") or {}
    if by_severity:
        counts = ", ".join(
            f"{severity} {by_severity[severity]}"
            for severity in ("critical", "high", "medium", "low")
            if severity in by_severity
        )
        out_console.print(f"Findings: {sum(by_severity.values())} ({counts})")
    files = ["report.html", "summary.json", "timeline.csv", "findings.ndjson"]
    files += ["messages.ndjson", "timeline.jsonl"]
    if (out / "subject-matches.csv").exists():
        files.append("subject-matches.csv")
    if totals["items_failed"]:
        files.append("failures.ndjson")
    out_console.print(f"Case folder: [bold]{safe(out)}[/bold] ({', '.join(files)})")


def _print_enrichment(enrichment: dict[str, Any]) -> None:
    """What each enrichment source found, and every indicator it could not look up."""
    names = {"whois": "WHOIS", "virustotal": "VirusTotal", "geoip": "GeoIP"}
    for source, result in enrichment.items():
        if source == "whois":
            line = f"{len(result['records'])} of {result['domains']} domains"
        elif source == "virustotal":
            answered = len(result["reports"]) + len(result["not_found"])
            line = f"{answered} of {result['indicators']} indicators"
        else:
            line = f"{len(result['found'])} of {result['ips']} IPs found"
        out_console.print(f"{names[source]}: {line}", highlight=False)
        for failure in result.get("not_looked_up", []):
            out_console.print(
                f"  [yellow]not looked up[/yellow] {safe(failure['value'])}: "
                f"{safe(failure['reason'])}",
                highlight=False,
                soft_wrap=True,
            )


@app.command("sample-case")
def sample_case(
    out: Annotated[Path, typer.Argument(help="Folder to write the sample evidence into.")] = Path(
        "sample-case"
    ),
) -> None:
    """Write the built-in sample invoice-fraud case (EML files and an mbox)."""
    from inbec_export.sample.generator import generate_sample_case

    try:
        case = generate_sample_case(out)
    except OSError as exc:
        error_line(f"cannot write the sample case to {safe(out)}: {safe(exc.strerror or exc)}")
        raise typer.Exit(2) from exc
    out_console.print(
        f"Sample case written: {case.message_count} messages in {safe(case.evidence_dir)}, "
        f"legitimate domains in {safe(case.legit_file)}"
    )


@app.command()
def mappings(
    out: Annotated[Path, typer.Argument(help="Folder to write the index templates into.")] = Path(
        "mappings"
    ),
    prefix: Annotated[str, typer.Option(help="Index name prefix.")] = "inbec",
) -> None:
    """Write the index template of each document kind as JSON."""
    from inbec_export.ecs.mappings import index_templates
    from inbec_export.sinks.search import validate_prefix

    with one_line_errors():
        validate_prefix(prefix)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for kind, template in index_templates(prefix).items():
            path = out / f"{kind}.json"
            text = json.dumps(template, indent=2, sort_keys=True) + "\n"
            path.write_text(text, encoding="utf-8")
            out_console.print(f"wrote {safe(path)}")
    except OSError as exc:
        error_line(f"cannot write templates to {safe(out)}: {safe(exc.strerror or exc)}")
        raise typer.Exit(2) from exc


@app.command()
def report(
    case_dir: Annotated[Path, typer.Argument(help="Case folder written by inbec analyze.")],
) -> None:
    """Write the visual report (report.html) of a case folder again.

    Exit codes: 0 written, 2 not a complete case folder, 1 the report cannot be written.
    """
    from inbec_export.sinks.report import write_report

    with one_line_errors():
        path = write_report(case_dir)
    out_console.print(f"wrote {safe(path)}")


@app.command("rules")
def list_rules() -> None:
    """List the detection rules (a finding may be raised above its rule's base severity)."""
    from inbec_export.detections.base import rules

    table = Table(show_edge=False)
    for column in ("id", "name", "base severity", "description"):
        table.add_column(column, overflow="fold")
    for rule in rules():
        table.add_row(rule.id, rule.name, rule.severity, rule.description)
    out_console.print(table)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwinds the run (the case folder is marked incomplete).

    A BaseException of our own, so that neither the rules' guards nor the command line
    library turn it into something else.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: The signal that began stopping the run, once one came.
_STOPPING: list[int] = []


def _interrupt(signum: int, _frame: object) -> None:
    if _STOPPING:
        # Again while the first one's clean-up runs: stop now. The case folder keeps
        # saying it is not complete; the reader processes end with this one.
        name = signal.Signals(signum).name
        os.write(2, f"{name} again: stopped at once; the case folder is not complete\n".encode())
        os._exit(128 + signum)
    _STOPPING.append(signum)
    raise Interrupted(signum)


def _stop_if_signalled() -> None:
    """Raise the :class:`Interrupted` of a signal that came while a finaliser ran (a
    library's ``__del__``): Python drops an exception raised there, and the run would
    go on to the end as if the signal had not come. Called at each step of a run."""
    if _STOPPING:
        raise Interrupted(_STOPPING[0])


def _unraisable(unraisable: Any) -> None:
    # The Interrupted of a signal dropped in a finaliser is raised again at the run's
    # next step (_stop_if_signalled): no traceback for it.
    if isinstance(unraisable.exc_value, Interrupted):
        return
    sys.__unraisablehook__(unraisable)


def _register_subcommands() -> None:
    # The export commands live in their own module; it imports this one's helpers.
    from inbec_export.cli_export import export_app

    app.add_typer(export_app, name="export")

    from inbec_export.cli_dashboards import dashboards_app

    app.add_typer(dashboards_app, name="dashboards")


_register_subcommands()


def main() -> None:
    """Console script entry point; Ctrl-C and SIGTERM leave the case marked incomplete."""
    _STOPPING.clear()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    sys.unraisablehook = _unraisable
    try:
        app()
    except SystemExit as done:
        if _STOPPING and not done.code:
            # The signal came in a finaliser after the run's last step: the work is
            # complete, but the command was asked to stop, so it does not say success.
            name = signal.Signals(_STOPPING[0]).name
            err_console.print(f"{name}: came as the command ended; its output is complete")
            sys.exit(128 + _STOPPING[0])
        raise
    except Interrupted as stop:
        name = signal.Signals(stop.signum).name
        err_console.print(f"{name}: stopped; the case folder is marked incomplete")
        # Stopped already: another signal while the interpreter ends changes nothing.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.exit(128 + stop.signum)
