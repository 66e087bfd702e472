import datasets

from emoe_cli.data.tasks import fraction


def test_train_fraction_is_a_fixed_nested_subset():
    data = datasets.Dataset.from_dict({"x": list(range(100))})
    half, fifth = fraction(data, 0.5, seed=0), fraction(data, 0.2, seed=0)
    assert len(half) == 50 and len(fifth) == 20 and len(fraction(data, 0.001, 0)) == 1
    assert set(fifth["x"]) <= set(half["x"]) and half["x"] == fraction(data, 0.5, 0)["x"]
    assert fraction(data, 1.0, seed=0) is data
