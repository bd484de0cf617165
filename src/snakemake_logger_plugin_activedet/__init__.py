"""A readable console for Snakemake 9: ``snakemake --logger activedet``.

Snakemake's own console prints every job's block and, with ``--printshellcmds``, its full shell command
(here a multi-kilobyte JSON of params per job); a paper dry run is then 10k-100k lines. This logger plugin
(Snakemake 9's logger plugin interface, found by its module name ``snakemake_logger_plugin_<name>``) prints
instead:

- where the results go (the workflow's ``onstart`` message) and the plan: the job-count table;
- one line per finished job: steps done / total, elapsed time and an estimate of the time left
  (elapsed / done x remaining), the rule and its wildcards;
- a failed job's rule, wildcards and log file with the last lines of that log (and nothing of its command);
- warnings, errors and Snakemake's closing lines.

Full job blocks and shell commands still go to Snakemake's log file (``.snakemake/log/``, with
``--printshellcmds``), which does not pass through this handler. ``--logger-activedet-jobs`` prints every
job's block on the console too (Snakemake's own format), e.g. to read one dry run in full.
"""


import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent
from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase

LOG_TAIL_LINES = 15
MAX_LINE = 300
# Snakemake's informational chatter that a person following a run does not need (it stays in the log file).
CHATTER = ("Building DAG of jobs", "Using shell:", "Provided cores:", "Provided resources:", "Rules claiming more",
           "Select jobs to execute", "Execute ", "Job stats:", "Assuming unrestricted shared filesystem",
           "Using workflow specific profile", "Config file ", "host:", "Conda environments:",
           "Waiting at most", "Ready jobs", "Selected jobs", "Setting up", "MissingOutputException hint")


@dataclass
class LogHandlerSettings(LogHandlerSettingsBase):
    jobs: bool = field(default=False, metadata={
        "help": "also print every job's block as Snakemake's own console does (a dry run's full plan)"})


def format_seconds(s: float) -> str:
    """``1 h 05 min``, ``12 min 30 s`` or ``45 s``."""
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def progress_line(done: int, total: int, elapsed: float, job: Optional[str] = None) -> str:
    """``[12/215 steps, 5%, 3 min 10 s elapsed, about 54 min left] train_detector (strategy=entropy, ...)``.

    The estimate assumes the remaining steps take as long on average as the finished ones (jobs differ a lot,
    so it is rough early on and improves as the run goes).
    """
    pct = 100 * done / total if total else 100.0
    left = "" if not done or done >= total else f", about {format_seconds(elapsed / done * (total - done))} left"
    head = f"[{done}/{total} steps, {pct:.0f}%, {format_seconds(elapsed)} elapsed{left}]"
    return f"{head} {job}" if job else head


def shorten(line: str, limit: int = MAX_LINE) -> str:
    """A console line of at most ``limit`` characters (error messages quote whole shell commands)."""
    return line if len(line) <= limit else f"{line[:limit]} ... (cut; the whole line is in .snakemake/log/)"


def log_tail(path: str, n: int = LOG_TAIL_LINES) -> list[str]:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        return [f"(cannot read {path}: {e.strerror})"]
    return lines[-n:]


def _job_name(rule: str, wildcards) -> str:
    w = ", ".join(f"{k}={v}" for k, v in (wildcards or {}).items())
    return f"{rule} ({w})" if w else rule


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        self.stream = sys.stdout if getattr(self.common_settings, "stdout", False) else sys.stderr
        self.started = time.monotonic()
        self.jobs = {}  # jobid -> "rule (wildcards)"
        self.last_finished: Optional[str] = None
        self.full = bool(self.settings and getattr(self.settings, "jobs", False))
        if self.full:
            from snakemake.logging import DefaultFormatter

            self.default = DefaultFormatter(self.common_settings.quiet, self.common_settings.show_failed_logs)

    @property
    def writes_to_stream(self) -> bool:
        return True

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return True

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False

    def _print(self, text: str) -> None:
        if text:
            print(text, file=self.stream, flush=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._emit(record)
        except Exception:  # a logger must never take the workflow down
            self.handleError(record)

    def _emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        if record.levelno < logging.INFO and event is None:
            return
        if event in (LogEvent.SHELLCMD, LogEvent.GROUP_INFO):  # printed only in full (--logger-activedet-jobs)
            if self.full and (event == LogEvent.GROUP_INFO or self.common_settings.printshellcmds):
                self._print(self.default.format(record))
            return
        if event == LogEvent.JOB_INFO:
            self.jobs[record.jobid] = _job_name(record.rule_name, record.wildcards)
            if self.full:
                self._print(self.default.format(record))
            return
        if event == LogEvent.JOB_FINISHED:
            self.last_finished = self.jobs.pop(getattr(record, "job_id", None), None)
            return
        if event == LogEvent.PROGRESS:
            self._print(progress_line(record.done, record.total, time.monotonic() - self.started, self.last_finished))
            self.last_finished = None
            return
        if event == LogEvent.JOB_ERROR:
            self._job_error(record.rule_name, getattr(record, "wildcards", None) or {}, record.jobid, record.log)
            return
        if event == LogEvent.GROUP_ERROR:
            for info in record.job_error_info:
                self._job_error(info["rule_name"], {}, info["jobid"], info["log"])
            for path in record.aux_logs:
                self._print(f"  log: {path}")
            return
        if event in (LogEvent.RESOURCES_INFO, LogEvent.DEBUG_DAG, LogEvent.RULEGRAPH,
                     LogEvent.WORKFLOW_STARTED):
            return
        if event == LogEvent.RUN_INFO:  # the job-count table: the plan in a few lines
            self._print(record.getMessage())
            return
        msg = record.getMessage()
        if record.levelno == logging.INFO and msg.lstrip().startswith(CHATTER):
            return
        self._print("\n".join(shorten(line) for line in msg.splitlines()))

    def _job_error(self, rule: str, wildcards: dict, jobid, logs) -> None:
        name = self.jobs.get(jobid) or _job_name(rule, wildcards)
        self._print(f"error: job {name} failed" + (f"; its log: {', '.join(logs)}" if logs else ""))
        for path in logs or []:
            tail = log_tail(path)
            if tail:
                self._print(f"  last lines of {path}:")
                self._print("\n".join(f"    {line}" for line in tail))
