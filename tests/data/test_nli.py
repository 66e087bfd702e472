"""NLI and pair OOD sets: real SNLI / SICK files, generated hub-only formats, hub paths."""

import pytest

from emoe_cli.data.sources import load_source
from emoe_cli.errors import DataError
from tests.data import fakes


def test_real_snli_test_without_gold_less_pairs(shared_data):
    data = load_source("snli", "test", shared_data)
    assert len(data) == 10_000 - 176 and sorted(set(data["label"])) == [0, 1, 2]
    assert data[0]["text_b"] == "The church has cracks in the ceiling." and data[0]["label"] == 1


def test_real_sick_splits_cover_every_pair(shared_data):
    sizes = {split: len(load_source("sick_nli", split, shared_data))
             for split in ("train", "validation", "test")}
    assert sizes == {"train": 4439, "validation": 495, "test": 4906}
    assert sum(sizes.values()) == 9840


def test_real_sick_relatedness_on_the_stsb_scale(shared_data):
    data = load_source("sick_relatedness", "test", shared_data)
    assert len(data) == 4906 and data.features["label"].dtype == "float32"
    assert 0.0 <= min(data["label"]) and max(data["label"]) <= 5.0
    assert data[0]["label"] == pytest.approx((3.3 - 1) * 5 / 4)  # pair 6 is rated 3.3


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_hans_evaluation_set_format(tmp_path):
    header = ("gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
              "sentence2_parse\tsentence1\tsentence2\tpairID\theuristic\tsubcase\ttemplate\n")
    _write(tmp_path / "HANS" / "heuristics_evaluation_set.txt", header +
           "non-entailment\t(x)\t(y)\t(X)\t(Y)\tThe doctor saw the lawyer .\t"
           "The lawyer saw the doctor .\tex0\tlexical_overlap\tln_subject\ttemp1\n"
           "entailment\t(x)\t(y)\t(X)\t(Y)\tThe actor slept .\tThe actor slept .\tex1\t"
           "lexical_overlap\tle_identity\ttemp2\n")
    data = load_source("hans", "test", tmp_path)
    assert list(zip(data["text_b"], data["label"])) == [("The lawyer saw the doctor .", 1),
                                                        ("The actor slept .", 0)]


def test_scitail_tsv_format_has_no_header(tmp_path):
    _write(tmp_path / "SciTail" / "tsv_format" / "scitail_1.0_test.tsv",
           "Heat melts ice.\tIce melts when heated.\tentails\n"
           "Plants grow.\tThe moon is made of rock.\tneutral\n")
    assert load_source("scitail", "test", tmp_path)["label"] == [0, 1]


def test_wikiqa_answers_become_entailment(tmp_path):
    _write(tmp_path / "WikiQA" / "WikiQA-test.tsv",
           "QuestionID\tQuestion\tDocumentID\tDocumentTitle\tSentenceID\tSentence\tLabel\n"
           "Q1\thow tall is everest\tD1\tEverest\tD1-0\tEverest is 8,849 m high.\t1\n"
           "Q1\thow tall is everest\tD1\tEverest\tD1-1\tIt is in Nepal.\t0\n")
    data = load_source("wikiqa", "test", tmp_path)
    assert data["text_a"] == ["how tall is everest"] * 2 and data["label"] == [0, 1]


def test_paws_keeps_paraphrase_ids(tmp_path):
    _write(tmp_path / "PAWS" / "test.tsv", "id\tsentence1\tsentence2\tlabel\n"
           "1\tA b c.\tC b a.\t0\n2\tA b.\tA b .\t1\n")
    assert load_source("paws", "test", tmp_path)["label"] == [0, 1]


def test_sick_bad_label_names_file_and_line(tmp_path):
    header = "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tSemEval_set\n"
    _write(tmp_path / "SICK" / "SICK.txt", header + "1\tA.\tB.\tNEUTRAL\t3\tTEST\n"
           "2\tA.\tB.\tMAYBE\t3\tTEST\n")
    with pytest.raises(DataError, match=r"SICK.txt:3: column 'entailment_label' is 'MAYBE'"):
        load_source("sick_nli", "test", tmp_path)


PAIR = {"premise": ["p0", "p1", "p2"], "hypothesis": ["h0", "h1", "h2"]}


@pytest.mark.parametrize("name, path, config, split, options, table, labels", [
    ("snli", "stanfordnlp/snli", None, "test", {}, {**PAIR, "label": [0, -1, 2]}, [0, 2]),
    ("hans", "jhu-cogsci/hans", None, "validation",
     {"revision": "refs/convert/parquet", "data_dir": "plain_text"},
     {**PAIR, "label": [1, 0, 1]}, [1, 0, 1]),
    ("scitail", "allenai/scitail", None, "test",
     {"revision": "refs/convert/parquet", "data_dir": "tsv_format"},
     {**PAIR, "label": ["entails", "neutral", "neutral"]}, [0, 1, 1]),
    ("sick_nli", "RobZamp/sick", None, "test",
     {"revision": "refs/convert/parquet", "data_dir": "default"},
     {"sentence_A": ["a"] * 3, "sentence_B": ["b"] * 3, "label": [2, 1, 0],
      "relatedness_score": [1.0, 3.0, 5.0]}, [2, 1, 0]),
    ("sick_relatedness", "RobZamp/sick", None, "test",
     {"revision": "refs/convert/parquet", "data_dir": "default"},
     {"sentence_A": ["a"] * 3, "sentence_B": ["b"] * 3, "label": [2, 1, 0],
      "relatedness_score": [1.0, 3.0, 5.0]}, [0.0, 2.5, 5.0]),
    ("wikiqa", "microsoft/wiki_qa", None, "test", {},
     {"question": ["q"] * 3, "answer": ["a"] * 3, "label": [1, 0, 0], "document_title": ["t"] * 3},
     [0, 1, 1]),
    ("paws", "google-research-datasets/paws", "labeled_final", "test", {},
     {"sentence1": ["a"] * 3, "sentence2": ["b"] * 3, "label": [1, 0, 1], "id": [1, 2, 3]},
     [1, 0, 1]),
])
def test_hub_paths_and_label_mapping(monkeypatch, name, path, config, split, options, table,
                                     labels):
    hub = fakes.install(monkeypatch, {path: table})
    data = load_source(name, "test", None)
    assert hub.calls == [(path, config, split, options)]
    assert data.column_names == ["text_a", "text_b", "label"]
    assert data["label"] == labels and data["text_b"][0] is not None
