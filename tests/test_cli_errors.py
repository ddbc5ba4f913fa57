"""kanzoo._cli: the one error path of the entry points."""

import pytest

from kanzoo._cli import UserInputError, one_line, run_main


def test_one_line_folds_message_and_prefixes_error():
    assert one_line(ValueError("bad\n  value for x")) == "error: bad value for x"
    assert one_line("error: already prefixed") == "error: already prefixed"
    assert one_line(KeyError("missing key 'a'")) == "error: missing key 'a'"
    assert one_line(ValueError("")) == "error: ValueError"


def test_run_main_turns_user_errors_into_exit_2(capsys):
    def bad():
        raise UserInputError("trainer.lr must be a number, got 'abc'")

    with pytest.raises(SystemExit) as exc:
        run_main(bad)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: trainer.lr must be a number, got 'abc'\n"


def test_run_main_os_errors_are_user_errors(capsys):
    def missing():
        raise FileNotFoundError("checkpoint directory /no/such does not exist")

    with pytest.raises(SystemExit) as exc:
        run_main(missing)
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error: checkpoint directory /no/such")


def test_run_main_keeps_tracebacks_for_bugs_and_returns_values():
    def bug():
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        run_main(bug)
    assert run_main(lambda a, b=0: a + b, 1, b=2) == 3


def test_a_closed_stdout_pipe_ends_quietly_with_status_1():
    """`python -m kanzoo.models | head`: the reader left; no `error:` line, no traceback."""
    import subprocess
    import sys

    code = (
        "import sys; from kanzoo._cli import run_main\n"
        "def main():\n"
        "    for i in range(100000):\n"
        "        print('row', i)\n"
        "sys.exit(run_main(main))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert err == "", err
