"""The command line answers as a shell user expects."""


def test_help_lists_every_subcommand(cytogan):
    out = cytogan("--help").stdout
    for sub in ["serve", "train", "extract", "sample", "encode", "synth", "demo", "image", "profile"]:
        assert sub in out, f"'{sub}' missing from cytogan --help"


def test_developer_tools_are_hidden_but_answer(cytogan):
    """image bench, image fuzz and bench engine stay out of the user's lists and still run."""
    assert "\n  bench " not in cytogan("--help").stdout
    image = cytogan("image", "--help").stdout
    assert "\n  bench " not in image and "\n  fuzz " not in image
    for tool in [("image", "bench"), ("image", "fuzz"), ("bench", "engine")]:
        assert "USAGE: cytogan " + " ".join(tool) in cytogan(*tool, "--help").stdout


def test_fixed_choice_options_name_their_values(cytogan):
    p = cytogan("train", "--manifest", "none.csv", "--steps", 1, "--progress", "fancy", check=False)
    assert p.returncode != 0
    assert "--progress" in p.stderr
    for value in ["auto", "bar", "lines", "none"]:
        assert f"'{value}'" in p.stderr
    assert "(values: auto, bar, lines, none; default: auto)" in " ".join(cytogan("train", "--help").stdout.split())


def test_unknown_subcommand_fails_with_message(cytogan):
    p = cytogan("no-such-command", check=False)
    assert p.returncode != 0
    assert "no-such-command" in p.stderr
