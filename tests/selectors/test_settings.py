"""``ReferenceSettings``: the reference's ``tasksampler.*`` keys shared by the TRL and verl adapters."""

import json
from dataclasses import fields

import numpy as np
import pytest

from mopps import MoPPS, SuccessRule
from mopps.selectors.settings import ReferenceSettings, read_pass_counts


def test_defaults_are_those_of_mopps():
    settings = ReferenceSettings()
    selector = settings.build_selector()
    default = MoPPS()
    assert selector.state_dict()["config"] == default.state_dict()["config"]
    assert settings.bandit_decay_ratio == 1.0 and settings.ts_ratio == 8.0 and settings.seed is None
    assert settings.build_success_rule() == SuccessRule("threshold", 1.0)


def test_keys_map_to_mopps_arguments():
    settings = ReferenceSettings(bandit_sample_strategy="threshold", bandit_target_mean=0.4, bandit_decay_ratio=0.5,
                                 bandit_lower_bound=0.2, bandit_upper_bound=0.9, prior_alpha=2.0, prior_beta=3.0,
                                 seed=7)
    selector = settings.build_selector(default_seed=99)
    assert (selector.strategy, selector.target, selector.discount, selector.band) == ("threshold", 0.4, 0.5, (0.2, 0.9))
    np.testing.assert_allclose(selector.posterior([5]), ([2.0], [3.0]))
    # seed 7 wins over the adapter's default seed
    same = MoPPS(prior=(2.0, 3.0), discount=0.5, target=0.4, strategy="threshold", band=(0.2, 0.9), seed=7)
    assert selector.select(list(range(20)), 4).ids.tolist() == same.select(list(range(20)), 4).ids.tolist()
    assert ReferenceSettings().seed_or(5) == 5 and ReferenceSettings(seed=2).seed_or(5) == 2


def test_num_candidates_rounds_and_caps():
    assert ReferenceSettings(ts_ratio=2.5).num_candidates(3) == 8
    assert ReferenceSettings(ts_ratio=8).num_candidates(4, available=10) == 10
    assert ReferenceSettings(ts_ratio=1).num_candidates(4, available=10) == 4


@pytest.mark.parametrize("values, field", [
    (dict(ts_ratio=0.5), "ts_ratio"),
    (dict(ts_ratio=float("nan")), "ts_ratio"),
    (dict(ts_ratio="eight"), "ts_ratio"),
    (dict(ts_ratio=True), "ts_ratio"),
    (dict(bandit_sample_strategy="best"), "bandit_sample_strategy"),
    (dict(bandit_target_mean=1.5), "bandit_target_mean"),
    (dict(bandit_decay_ratio=-0.1), "bandit_decay_ratio"),
    (dict(bandit_lower_bound=0.8), "bandit_lower_bound"),
    (dict(bandit_upper_bound=float("nan")), "bandit_upper_bound"),
    (dict(bandit_no_update="yes"), "bandit_no_update"),
    (dict(prior_alpha=0.0), "prior_alpha"),
    (dict(prior_beta=float("inf")), "prior_beta"),
    (dict(bandit_init_weight=-1.0), "bandit_init_weight"),
    (dict(bandit_init_path="a.json", bandit_load_path="b.npz"), "bandit_init_path"),
    (dict(success_rule="acc"), "success_rule"),
    (dict(success_threshold=float("nan")), "success_threshold"),
    (dict(seed=-1), "seed"),
    (dict(seed=1.5), "seed"),
    (dict(dynamic_sampling_at_cap="drop"), "dynamic_sampling_at_cap = 'drop'"),
])
def test_bad_values_are_refused_naming_the_field(values, field):
    with pytest.raises(ValueError, match=field):
        ReferenceSettings(**values)


def test_load_path_restores_a_saved_selector(tmp_path):
    trained = MoPPS(discount=0.5, seed=3)
    trained.update([1, 2], [3.0, 0.0], [4.0, 4.0])
    trained.save(tmp_path / "selector.npz")
    selector = ReferenceSettings(bandit_decay_ratio=0.5, bandit_load_path=str(tmp_path / "selector.npz")).build_selector()
    np.testing.assert_allclose(selector.posterior([1, 2]), trained.posterior([1, 2]))
    assert ReferenceSettings(bandit_load_path="").build_selector().posterior([1])[0].tolist() == [1.0]


def test_prior_file_seeds_posteriors_with_its_weight(tmp_path):
    prior = tmp_path / "index_score.json"
    prior.write_text(json.dumps({"100": [1, 1, 1, 0], "101": [0, 0, 0, 0], "999": [1]}))
    settings = ReferenceSettings(bandit_init_path=str(prior), bandit_init_weight=3.0)
    selector = settings.build_selector()
    settings.apply_prior_file(selector, np.arange(100, 110))
    np.testing.assert_allclose(selector.posterior([100, 101]), ([10.0, 1.0], [4.0, 13.0]))
    keyed = settings.build_selector()
    ReferenceSettings(bandit_init_path=str(prior), bandit_init_weight=1.0).apply_prior_file(keyed, ["100", "x"])
    np.testing.assert_allclose(keyed.posterior(["100"]), ([4.0], [2.0]))


def test_prior_file_that_matches_nothing_or_the_wrong_kind_is_refused(tmp_path):
    prior = tmp_path / "index_score.json"
    prior.write_text(json.dumps({"q-100": [1, 0]}))
    settings = ReferenceSettings(bandit_init_path=str(prior))
    with pytest.raises(ValueError, match="q-100.*integers"):
        settings.apply_prior_file(settings.build_selector(), np.arange(4), "row positions")
    with pytest.raises(ValueError, match="bandit_init_path.*none of its 1 prompt ids.*here \\(the test set"):
        settings.apply_prior_file(settings.build_selector(), ["a", "b"], "the test set")


def test_unset_prior_file_changes_nothing():
    selector = ReferenceSettings().build_selector()
    ReferenceSettings(bandit_init_path="").apply_prior_file(selector, [1, 2])
    assert len(selector) == 0


def test_read_pass_counts(tmp_path):
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"a": [1, 0, 1], "b": [0.5]}))
    keys, successes, trials = read_pass_counts(path)
    assert keys == ["a", "b"]
    np.testing.assert_allclose(successes, [2.0, 0.5])
    np.testing.assert_allclose(trials, [3.0, 1.0])
    for bad, match in (([], "non-empty"), ([2], "outside"), ("x", "non-empty")):
        path.write_text(json.dumps({"k": bad}))
        with pytest.raises(ValueError, match=match):
            read_pass_counts(path)
    path.write_text("[1]")
    with pytest.raises(ValueError, match="JSON object"):
        read_pass_counts(path)


def test_both_adapters_share_the_fields_and_defaults():
    from mopps.integrations.trl import config as trl
    from mopps.integrations.verl.config import MoPPSVerlConfig

    shared = {field.name: field.default for field in fields(ReferenceSettings)}
    for config in (trl.TrlSelectionSettings, MoPPSVerlConfig):
        assert issubclass(config, ReferenceSettings)
        assert {name: field.default for name, field in config.__dataclass_fields__.items() if name in shared} == shared


def test_every_field_says_what_it_means():
    # HfArgumentParser / TrlParser show field.metadata["help"]; verl's YAML comments point here.
    assert all(entry.metadata.get("help") for entry in fields(ReferenceSettings))


def test_selector_class_builds_that_selector_with_its_kwargs_and_the_seed():
    from mopps import HistoryFilter, Uniform

    selector = ReferenceSettings(selector_class="mopps.HistoryFilter", selector_kwargs={"target_zero_variance": 0.2},
                                 seed=4).build_selector(default_seed=9)
    assert isinstance(selector, HistoryFilter) and selector.state_dict()["config"]["target_zero_variance"] == 0.2
    same = HistoryFilter(target_zero_variance=0.2, seed=4)
    assert selector.select(list(range(30)), 5).ids.tolist() == same.select(list(range(30)), 5).ids.tolist()
    # "module:Name" and JSON text (what a command line passes) work too; kwargs may set the seed
    uniform = ReferenceSettings(selector_class="mopps.selectors:Uniform", selector_kwargs='{"seed": 11}')
    uniform = uniform.build_selector()
    assert uniform.select(list(range(30)), 5).ids.tolist() == Uniform(seed=11).select(list(range(30)), 5).ids.tolist()


@pytest.mark.parametrize("values, match", [
    (dict(selector_class="mopps.NoSuchSelector"), "cannot be imported"),
    (dict(selector_class="json.dumps"), "not a mopps.Selector subclass"),
    (dict(selector_class="mopps.Uniform", selector_kwargs={"target": 0.5}), "refused selector_kwargs"),
])
def test_a_bad_selector_class_is_refused_naming_it(values, match):
    with pytest.raises(ValueError, match=f"selector_class = .*{match}"):
        ReferenceSettings(**values).build_selector()


@pytest.mark.parametrize("values, field", [
    (dict(selector_kwargs={"seed": 1}), "selector_kwargs"),
    (dict(selector_class="mopps.Uniform", selector_kwargs="{not json"), "selector_kwargs"),
    (dict(selector_class="mopps.Uniform", selector_kwargs=[1]), "selector_kwargs"),
    (dict(features_column=3), "features_column"),
    (dict(features_column="embedding", features_path="f.npz"), "features_path"),
])
def test_bad_selector_and_feature_fields_are_refused(values, field):
    with pytest.raises(ValueError, match=field):
        ReferenceSettings(**values)


@pytest.mark.parametrize("field, value", [
    ("bandit_decay_ratio", 0.5), ("bandit_sample_strategy", "threshold"), ("prior_beta", 2.0),
])
def test_a_ready_selector_or_selector_class_refuses_changed_mopps_fields(field, value):
    from mopps import Uniform

    settings = ReferenceSettings(**{field: value})
    with pytest.raises(ValueError, match=f"{field} = .*configures the built-in MoPPS, but a ready selector"):
        settings.build_selector(selector=Uniform(seed=0))
    with pytest.raises(ValueError, match=f"{field} = .*but selector_class = 'mopps.Uniform'"):
        ReferenceSettings(selector_class="mopps.Uniform", **{field: value}).build_selector()


@pytest.mark.parametrize("field", ["features_column", "features_path"])
def test_features_for_a_selector_that_takes_none_are_refused_naming_the_field(field):
    from mopps import ContextualMoPPS, Uniform

    settings = ReferenceSettings(**{field: "embedding"})
    for selector in (None, Uniform(seed=0)):
        with pytest.raises(ValueError, match=f"{field} = 'embedding' is set but (MoPPS|Uniform) takes no features"):
            settings.build_selector(selector=selector)
    assert isinstance(settings.build_selector(selector=ContextualMoPPS(seed=0)), ContextualMoPPS)


def test_a_ready_selector_is_used_as_given_and_not_with_a_selector_class(tmp_path):
    from mopps import Uniform

    ready = Uniform(seed=3)
    assert ReferenceSettings(ts_ratio=4, bandit_no_update=True).build_selector(selector=ready) is ready
    with pytest.raises(ValueError, match="both given"):
        ReferenceSettings(selector_class="mopps.Uniform").build_selector(selector=ready)
    with pytest.raises(ValueError, match="must be a mopps.Selector"):
        ReferenceSettings().build_selector(selector=object())
    # bandit_load_path restores any selector's saved state, not only MoPPS's
    trained = Uniform(seed=3)
    trained.update([1, 2], [1.0, 0.0], [2.0, 2.0])
    trained.save(tmp_path / "uniform.npz")
    loaded = ReferenceSettings(bandit_load_path=str(tmp_path / "uniform.npz")).build_selector(selector=Uniform(seed=3))
    assert loaded.state_dict()["arrays"]["ids"].tolist() == [1, 2]


def test_the_new_options_reach_mopps_through_selector_kwargs_as_json():
    # TRL and verl configs take them as JSON text: learned forgetting, the floor and a target schedule.
    settings = ReferenceSettings(selector_class="mopps.MoPPS", selector_kwargs=(
        '{"discount": "auto", "explore": 0.05, "target": [[0, 0.7], [500, 0.5]]}'))
    selector = settings.build_selector(default_seed=3)
    assert isinstance(selector, MoPPS)
    assert selector._config() == {"prior": [1.0, 1.0], "discount": "auto", "target": [[0.0, 0.7], [500.0, 0.5]],
                                  "strategy": "topk", "band": [0.3, 0.7], "explore": 0.05}
