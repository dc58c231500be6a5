"""Exit codes and the one error type command handlers raise."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 1  # bad arguments, unreadable files, missing configuration: fixed on this side
EXIT_API = 2  # the API answered with an error, or the activation itself failed
EXIT_UNREACHABLE = 3  # no answer from the API host (refused, DNS, TLS, timeout)
EXIT_NOT_FINISHED = 4  # a blocking invoke outlived the server's wait; the activation goes on

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}  success
  {EXIT_USAGE}  usage or local error (bad arguments, unreadable file, missing auth)
  {EXIT_API}  the API answered with an error, or the invoked action failed
  {EXIT_UNREACHABLE}  the API host could not be reached
  {EXIT_NOT_FINISHED}  blocking invoke accepted, not finished in time (see 'ft activation get')"""


class CliError(Exception):
    """A failure reported as a single ``error: ...`` line on stderr."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
