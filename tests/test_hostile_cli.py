"""Hostile command lines (hypothesis): any value of a numeric or seed option either is
accepted with the value the user gave, or ends in exit code 2 with one message naming
the option; never a traceback. Training itself is replaced by a stub."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncl import cli

OPTIONS = {"--seeds": "seeds", "--first-seed": "first_seed", "--epochs": "epochs",
           "--steps-per-epoch": "steps_per_epoch", "-T": "chain_length",
           "--lr": "learning_rate", "--batch-min": "batch_min", "--batch-max": "batch_max",
           "-L": "n_hidden", "--checkpoint-every": "checkpoint_every"}
values = st.one_of(st.integers(-2 ** 40, 2 ** 40).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.sampled_from(["", "abc", "1e400", "nan", "-inf", "0", "1", "2", "True",
                                    "4294967295", "4294967296", "0x10", " 3", "1_000"]))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(OPTIONS)), values)
def test_any_option_value_is_accepted_or_a_usage_error(tmp_path_factory, monkeypatch, capsys,
                                                       option, value):
    seen = {}

    def stub(out, config, seeds, x, info, extra, start, state, prior, args, log):
        seen.update(config=config, seeds=seeds)
        return cli.EXIT_OK

    monkeypatch.setattr(cli, "_run_training", stub)
    out = tmp_path_factory.mktemp("out") / "run"
    argv = ["train", "--seeds", "2", "--cpu-devices", "1", "-q", "--out", str(out),
            option, value]
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse: bad type or range of an option
        rc = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if rc == cli.EXIT_OK:
        assert seen, "accepted but did not train"
        return
    assert rc == cli.EXIT_USAGE, (rc, err)
    names = {option, OPTIONS[option], "--batch-min", "--batch-max", "batch_min",
             "batch_max", "--first-seed/--seeds", "-L/--hidden-units", "--lr", "-T/--chain-length"}
    assert any(n in err for n in names), err
