"""`bellman gridworld solve|learn` through typer's CliRunner: files, values against the API, one-line errors."""

import inspect
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bellman.cli import app
from bellman.envs.gridworld import GridWorld
from bellman.cli.gridworld import LEARNERS, SOLVERS
from bellman.planning import evaluate_policy, value_iteration
from bellman.tabular import q_learning

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return runner.invoke(app, ["gridworld", *map(str, args)])


def is_png(path):
    return path.read_bytes()[:8] == PNG_SIGNATURE


def test_solve_value_iteration_matches_the_api(tmp_path):
    result = invoke("solve", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "result.json").read_text())
    expected = value_iteration(GridWorld().mdp)
    np.testing.assert_allclose(data["v"], expected.v, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(data["policy"], expected.policy)
    assert data["iterations"] == expected.iterations
    assert data["v"][GridWorld().target_state] == pytest.approx(10.0, abs=1e-8)  # r_target / (1 - gamma)
    assert is_png(tmp_path / "values.png")


@pytest.mark.parametrize("algo, extra", [("policy-iteration", []), ("truncated-pi", ["--sweeps", 3])])
def test_solve_other_algorithms_reach_v_star_on_a_custom_grid(tmp_path, algo, extra):
    grid = ["--rows", 3, "--cols", 4, "--forbidden", "1,1;0,2", "--target", "2,3", "--gamma", 0.8,
            "--r-forbidden", -2, "--start", "0,0"]
    result = invoke("solve", "--algo", algo, *grid, *extra, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "result.json").read_text())
    env = GridWorld(3, 4, forbidden=[(1, 1), (0, 2)], target=(2, 3), gamma=0.8, r_forbidden=-2)
    v_star = value_iteration(env.mdp, tol=1e-13).v
    np.testing.assert_allclose(data["v"], v_star, rtol=0, atol=1e-8)
    assert data["grid"]["forbidden"] == [[1, 1], [0, 2]] and data["grid"]["r_forbidden"] == -2
    assert data["sweeps"] == (3 if algo == "truncated-pi" else None)


def test_every_learner_maps_to_a_tabular_function_taking_its_options():
    from bellman import tabular

    for algo, (name, takes) in LEARNERS.items():
        parameters = inspect.signature(getattr(tabular, name)).parameters
        assert set(takes) | {"seed", "progress"} <= set(parameters), algo


def check_learn_output(tmp_path, result, env):
    assert result.exit_code == 0, result.output
    assert "||v_learned - v*||_inf" in result.output
    assert is_png(tmp_path / "policy.png") and is_png(tmp_path / "learning_curve.png")
    data = json.loads((tmp_path / "result.json").read_text())
    v_star = value_iteration(env.mdp).v
    np.testing.assert_allclose(data["v_star"], v_star, atol=1e-12)
    assert data["v_error"] == pytest.approx(np.max(np.abs(np.array(data["v"]) - v_star)), abs=1e-12)
    v_pi = evaluate_policy(env.mdp, np.array(data["policy"]))
    assert data["policy_value_error"] == pytest.approx(np.max(np.abs(v_pi - v_star)), abs=1e-9)
    assert np.all(v_pi <= v_star + 1e-9)  # no policy beats v*
    assert len(data["returns"]) == len(data["lengths"]) > 0
    return data


def test_learn_q_learning_matches_the_api_and_finds_an_optimal_policy(tmp_path):
    result = invoke("learn", "--algo", "q-learning", "--rows", 3, "--cols", 3, "--episodes", 100,
                    "--episode-length", 50, "--epsilon", 0.5, "--random-start", "--seed", 1, "--no-progress",
                    "--out", tmp_path)
    data = check_learn_output(tmp_path, result, GridWorld(3, 3))
    direct = q_learning(GridWorld(3, 3), episodes=100, episode_length=50, epsilon=0.5, random_start=True, seed=1)
    np.testing.assert_array_equal(data["returns"], direct.returns)
    np.testing.assert_array_equal(data["q"], direct.q)
    assert data["greedy_policy_value_error"] < 1e-6


def test_learn_mc_basic_on_a_custom_grid(tmp_path):
    result = invoke("learn", "--algo", "mc-basic", "--rows", 2, "--cols", 3, "--forbidden", "0,1", "--target", "1,2",
                    "--iterations", 3, "--episodes", 1, "--episode-length", 20, "--seed", 0, "--no-progress",
                    "--window", 5, "--out", tmp_path)
    data = check_learn_output(tmp_path, result, GridWorld(2, 3, forbidden=[(0, 1)], target=(1, 2)))
    assert data["options"] == {"iterations": 3, "episodes": 1, "episode_length": 20}


def one_line_error(result):
    lines = result.output.strip().splitlines()
    return result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:") and result.exception is not None


@pytest.mark.parametrize("command, allowed", [("solve", SOLVERS), ("learn", LEARNERS)])
def test_unknown_algo_is_a_one_line_error_listing_the_choices(tmp_path, command, allowed):
    result = invoke(command, "--algo", "dijkstra", "--out", tmp_path)
    assert one_line_error(result), result.output
    assert "unknown --algo 'dijkstra'" in result.output
    assert all(name in result.output for name in allowed)
    assert not (tmp_path / "result.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["solve", "--sweeps", 2], "--sweeps applies to --algo truncated-pi only"),
        (["solve", "--forbidden", "1;2"], "--forbidden must be a cell"),
        (["solve", "--target", "1,1"], "also a forbidden cell"),
        (["solve", "--gamma", 1.0], "gamma must be in [0, 1)"),
        (["solve", "--rows", "abc"], "Invalid value for '--rows'"),
        (["learn", "--bogus", 1], "No such option: --bogus"),
        (["learn", "--algo", "mc-basic", "--alpha", 0.1], "--alpha does not apply to --algo mc-basic"),
        (["learn", "--algo", "sarsa", "--alpha", 2.0, "--episodes", 1], "alpha"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    result = invoke(*args, "--out", tmp_path)
    assert one_line_error(result), result.output
    assert message in result.output


def test_missing_out_is_a_one_line_error():
    result = invoke("solve")
    assert one_line_error(result), result.output
    assert "Missing option '--out'" in result.output


@pytest.mark.parametrize("command", [[], ["solve"], ["learn"]])
def test_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output
    expected = ["solve", "learn"] if not command else ["--algo", "--out", "--gamma"]
    assert all(word in result.output for word in expected)
