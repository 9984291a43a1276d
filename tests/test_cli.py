import subprocess
import sys

from fluidgrad import cli


def test_list_and_version(capsys):
    assert cli.main(["list"]) == 0
    assert capsys.readouterr().out.strip()
    out = subprocess.run([sys.executable, "-m", "fluidgrad", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("fluidgrad ")


def test_unknown_scenario_is_a_one_line_error(capsys):
    assert cli.main(["run", "no_such_scenario"]) == 2
    err = capsys.readouterr().err
    assert "no_such_scenario" in err and err.count("\n") == 1
