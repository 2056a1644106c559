"""Writes docs/cli.md from each command's --help (run from the repository's root after a command changes):

    python docs/make_cli.py
"""

import subprocess
import sys
from pathlib import Path

COMMANDS = ["train", "run-ablation", "check", "report", "compare"]
HEADER = """# The command line

Every command takes `-h`/`--help`. Errors in what you pass are one line naming the problem
and the fix, with exit status 2; nothing on disk is lost or half-written. This page is
`diagnose COMMAND --help` for each command, written by `python docs/make_cli.py` (a test
checks that it names every option).
"""


def main() -> None:
    out = [HEADER]
    for command in COMMANDS:
        text = subprocess.run([sys.executable, "-m", "diagnose.cli", command, "--help"], capture_output=True,
                              text=True, check=True, env={"COLUMNS": "100", "PATH": ""}).stdout
        out += [f"## diagnose {command}", "", "```text", text.rstrip(), "```", ""]
    Path(__file__).with_name("cli.md").write_text("\n".join(out), encoding="utf-8")


if __name__ == "__main__":
    main()
