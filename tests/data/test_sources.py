import tarfile

import datasets
import pytest

from emoe_cli.data import sources
from emoe_cli.data.sources import load_source
from emoe_cli.errors import DataError


def test_sst2_dev_from_the_real_glue_layout(shared_data):
    dev = load_source("sst2", "validation", shared_data)
    assert len(dev) == 872
    assert sorted(set(dev["label"])) == [0, 1]
    assert dev[0]["text_a"].startswith("it 's a charming and often affecting journey")
    assert dev[0]["label"] == 1 and dev[0]["text_b"] is None


def test_real_ood_sets_are_balanced_polarity(shared_data):
    amazon = load_source("amazon", "test", shared_data)
    assert len(amazon) == 8000 and sum(amazon["label"]) == 4000
    yelp = load_source("yelp", "test", shared_data)
    assert 0 < sum(yelp["label"]) < len(yelp) < 5000  # 3-star reviews dropped


def test_yelp_stars_map_to_polarity(tmp_path):
    (tmp_path / "yelp").mkdir()
    (tmp_path / "yelp" / "test.csv").write_text(
        "text,label1,label2\n"
        "awful,Business Category: X,Review Stars: 1.0\n"
        "meh,Business Category: X,Review Stars: 2.0\n"
        "fine,Business Category: X,Review Stars: 3.0\n"
        "good,Business Category: X,Review Stars: 4.0\n"
        "great,Business Category: X,Review Stars: 5.0\n")
    data = load_source("yelp", "test", tmp_path)
    assert list(zip(data["text_a"], data["label"])) == [
        ("awful", 0), ("meh", 0), ("good", 1), ("great", 1)]


def test_imdb_reads_the_original_archive(tmp_path):
    folder = tmp_path / "src" / "aclImdb" / "test"
    for polarity, name, text in [("pos", "1_9.txt", "loved it<br />really"),
                                 ("neg", "2_1.txt", "hated it")]:
        (folder / polarity).mkdir(parents=True)
        (folder / polarity / name).write_text(text)
    (tmp_path / "IMDB").mkdir()
    with tarfile.open(tmp_path / "IMDB" / "aclImdb_test.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "src" / "aclImdb", arcname="aclImdb")
    data = load_source("imdb", "test", tmp_path)
    assert sorted(zip(data["text_a"], data["label"])) == [("hated it", 0),
                                                         ("loved it really", 1)]


def test_amazon_reads_review_text_per_polarity(tmp_path):
    domain = tmp_path / "amazon_multidomain" / "books"
    domain.mkdir(parents=True)
    review = "<review>\n<title>\nt\n</title>\n<review_text>\n{}\n</review_text>\n</review>\n"
    (domain / "positive.review").write_bytes(review.format("caf\xe9 good").encode("latin-1"))
    (domain / "negative.review").write_bytes(review.format("bad  book").encode("latin-1"))
    data = load_source("amazon", "test", tmp_path)
    assert sorted(zip(data["text_a"], data["label"])) == [("bad book", 0), ("café good", 1)]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"missing SST-2 file .*SST-2/train.tsv"):
        load_source("sst2", "train", tmp_path)


def test_malformed_row_names_file_and_line(tmp_path):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\ngood\t1\nbad\tmaybe\n")
    with pytest.raises(DataError, match=r"dev.tsv:3: column 'label' is 'maybe'; valid: 0, 1"):
        load_source("sst2", "validation", tmp_path)


def test_hub_path_renames_columns(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [0, 1],
                                           "idx": [0, 1]})

    monkeypatch.setattr(sources.datasets, "load_dataset", fake_load_dataset)
    data = load_source("sst2", "validation", None)
    assert calls == [("nyu-mll/glue", "sst2", "validation")]
    assert data.column_names == ["text_a", "text_b", "label"]
    assert data["text_a"] == ["a", "b"]


def test_hub_failure_suggests_a_local_root(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(sources.datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="stanfordnlp/imdb.*set data.root to a local copy"):
        load_source("imdb", "test", None)


def test_unknown_set_lists_the_valid_ones():
    with pytest.raises(DataError,
                       match="unknown data set 'snli2'; valid: amazon, amazon_polarity, cola, "):
        load_source("snli2", "test", None)
