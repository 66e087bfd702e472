"""GLUE-X's OOD sets: the self-collected save_to_disk folders, the polarity sets' original
files, and the label bridges GLUE-X uses between NLI and paraphrase sets."""

import datasets
import pytest

from emoe_cli.data import glue_x
from emoe_cli.data.common import bad_rows_policy
from emoe_cli.data.labels import NLI2, PARAPHRASE, bridge, entailment_as_paraphrase
from emoe_cli.data.sources import SOURCES, load_source
from emoe_cli.data.tasks import check_task, read_ood
from emoe_cli.errors import DataError, MissingData, UserError
from tests.data import fakes
from tests.helpers import compose_config


def save(root, name, table, features=None):
    """A GLUE-X folder as the official script expects it: datasets_self_collected/<name>."""
    data = datasets.Dataset.from_dict(table, features=features)
    data.save_to_disk(str(root / "datasets_self_collected" / name))


# Official columns (test_glue_no_trainer.py task_to_keys) and label forms GLUE-X saves.
@pytest.mark.parametrize("name, table, rows", [
    ("cola_ood", {"sentence": ["Him left.", "She left."], "label": [0, 1]},
     [("Him left.", None, 0), ("She left.", None, 1)]),
    ("qnli_ood", {"question": ["Who?", "When?"], "sentence": ["Ann did.", "Blue."],
                  "label": ["entailment", "not_entailment"]},
     [("Who?", "Ann did.", 0), ("When?", "Blue.", 1)]),
    ("twitter", {"sentence1": ["a cat", "a dog"], "sentence2": ["the cat", "rain"],
                 "label": [1, 0]},
     [("a cat", "the cat", 1), ("a dog", "rain", 0)]),
    ("flipkart", {"sentence": ["great", "ok", "awful"],
                  "label": ["positive", "neutral", "negative"]},
     [("great", None, 1), ("ok", None, 0), ("awful", None, 0)]),  # GLUE-X: neutral is 0
])
def test_self_collected_folders_read_with_the_official_columns(tmp_path, name, table, rows):
    save(tmp_path, name, table)
    data = load_source(name, "test", tmp_path)
    assert data.column_names == ["text_a", "text_b", "label"]
    assert list(zip(data["text_a"], data["text_b"], data["label"])) == rows


def test_class_label_names_decide_the_ids(tmp_path):
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["positive", "negative"])})
    save(tmp_path, "flipkart", {"sentence": ["good", "bad"], "label": [0, 1]}, features)
    assert load_source("flipkart", "test", tmp_path)["label"] == [1, 0]


def test_a_saved_dataset_dict_is_read_from_its_test_split(tmp_path):
    parts = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": ["x"], "label": [0]}),
        "test": datasets.Dataset.from_dict({"sentence": ["y", "z"], "label": [1, 0]})})
    parts.save_to_disk(str(tmp_path / "datasets_self_collected" / "cola_ood"))
    assert load_source("cola_ood", "test", tmp_path)["text_a"] == ["y", "z"]


def test_a_missing_folder_names_the_path_and_layout_in_one_line(tmp_path):
    with pytest.raises(MissingData) as error:
        load_source("twitter", "test", tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert message == (f"task.ood: GLUE-X's 'twitter' needs {tmp_path}/datasets_self_collected/"
                       "twitter, which does not exist; expected a datasets.save_to_disk folder "
                       "(dataset_info.json, state.json, data-*.arrow) with columns sentence1, "
                       "sentence2, label")
    with pytest.raises(MissingData, match=r"needs <data.root>/datasets_self_collected/twitter, "
                                          r"but data.root is not set"):
        load_source("twitter", "test", None)


def test_wrong_folder_contents_and_labels_are_data_errors(tmp_path):
    (tmp_path / "datasets_self_collected" / "cola_ood").mkdir(parents=True)
    with pytest.raises(DataError, match="not readable by datasets.load_from_disk"):
        load_source("cola_ood", "test", tmp_path)
    save(tmp_path, "qnli_ood", {"question": ["q"], "sentence": ["s"], "label": ["maybe"]})
    with pytest.raises(DataError, match=r"row 0: column 'label' is 'maybe'; valid: 0, 1, "
                                        r"entailment, not_entailment"):
        load_source("qnli_ood", "test", tmp_path)
    save(tmp_path, "twitter", {"text": ["a"], "label": [1]})  # not the official columns
    with pytest.raises(DataError, match="row 0: no column 'sentence1'; columns: text, label"):
        load_source("twitter", "test", tmp_path)


def test_self_collected_sets_have_no_hub_fallback():
    assert {n for n, s in SOURCES.items() if not s.hub} == set(glue_x.SETS)


@pytest.mark.parametrize("name, line, expected", [
    ("yelp_polarity", '"2","Great tacos.\\nWill return."\n"1","Cold ""fries"""\n',
     [("Great tacos. Will return.", 1), ('Cold "fries"', 0)]),
    ("amazon_polarity", '"1","Meh","Broke in a day"\n"2","Yes","Works"\n',
     [("Broke in a day", 0), ("Works", 1)]),
])
def test_polarity_sets_read_their_original_release_files(tmp_path, name, line, expected):
    folder = tmp_path / f"{name.split('_')[0]}_review_polarity_csv"
    folder.mkdir()
    (folder / "test.csv").write_text(line)
    data = load_source(name, "test", tmp_path)
    assert list(zip(data["text_a"], data["label"])) == expected


@pytest.mark.parametrize("name, hub, column", [
    ("yelp_polarity", "fancyzhx/yelp_polarity", "text"),
    ("amazon_polarity", "fancyzhx/amazon_polarity", "content"),  # GLUE-X drops the title
])
def test_polarity_sets_without_root_come_from_the_hub(monkeypatch, name, hub, column):
    calls = fakes.install(monkeypatch, {hub: {"title": ["t", "u"], column: ["good", "bad"],
                                              "label": [1, 0]}}).calls
    data = load_source(name, "test", None)
    assert [call[:3] for call in calls] == [(hub, None, "test")]
    assert list(zip(data["text_a"], data["label"])) == [("good", 1), ("bad", 0)]


def test_a_malformed_polarity_row_follows_bad_rows(tmp_path):
    folder = tmp_path / "yelp_review_polarity_csv"
    folder.mkdir()
    (folder / "test.csv").write_text('"2","fine"\n"5","odd"\n')
    with pytest.raises(DataError, match="record 2: expected"):
        load_source("yelp_polarity", "test", tmp_path)
    with bad_rows_policy("skip") as tally:
        assert load_source("yelp_polarity", "test", tmp_path)["text_a"] == ["fine"]
    assert list(tally.skipped.values()) == [1]


def test_entailment_reads_as_paraphrase_both_ways():
    assert [entailment_as_paraphrase(y) for y in (0, 1)] == [1, 0]
    assert bridge(NLI2, PARAPHRASE).gold is entailment_as_paraphrase
    assert bridge(PARAPHRASE, NLI2).gold is entailment_as_paraphrase
    with pytest.raises(ValueError):
        entailment_as_paraphrase(2)


def test_rte_scores_mrpc_with_paraphrase_as_entailment(shared_data):
    task = compose_config(["task=rte", "task.ood=[mrpc]"]).task
    mrpc = load_source("mrpc", "validation", shared_data)
    scored = read_ood(task, "mrpc", shared_data, check_task(task)["mrpc"])
    assert scored["label"] == [1 - y for y in mrpc["label"]]
    assert scored["label"].count(0) == mrpc["label"].count(1) == 279  # paraphrases: entailment


def test_mrpc_scores_rte_with_entailment_as_paraphrase(shared_data):
    task = compose_config(["task=mrpc", "task.ood=[rte]"]).task
    rte = load_source("rte", "validation", shared_data)
    scored = read_ood(task, "rte", shared_data, check_task(task)["rte"])
    assert scored["label"] == [1 - y for y in rte["label"]]


@pytest.mark.parametrize("overrides, message", [
    (["task=sst2", "task.ood_extra=[nope]"],
     "task.ood_extra: unknown data set 'nope'; valid: amazon, amazon_polarity, flipkart, imdb, "
     "sst2, yelp, yelp_polarity"),
    (["task=qnli", "task.ood=[twiter]"],  # 2-way NLI: paraphrase and 3-way sets bridge to it
     "task.ood: unknown data set 'twiter'; valid: hans, mnli, mnli_mismatched, mrpc, paws, qnli, "
     "qnli_ood, qqp, rte, scitail, sick_nli, snli, twitter, wikiqa"),
    (["task=cola", "task.ood_extra=cola_ood_dev"],
     "task.ood_extra='cola_ood_dev' is invalid; valid: a list of data set names"),
])
def test_unknown_ood_names_list_the_valid_ones(overrides, message):
    with pytest.raises(UserError) as error:
        check_task(compose_config(overrides).task)
    assert str(error.value) == message


def test_an_unreachable_extra_names_the_extra_key(shared_data, monkeypatch):
    task = compose_config(["task=rte", "task.ood=[mrpc]", "task.ood_extra=[paws,scitail]"]).task
    fakes.offline(monkeypatch)
    with pytest.raises(DataError, match=r"^task.ood_extra: 'scitail' is neither under data.root "
                                        r".* leave it out: task.ood_extra=\[paws\]$"):
        read_ood(task, "scitail", shared_data, check_task(task)["scitail"])
