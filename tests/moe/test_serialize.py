import pytest
import torch
import transformers

from emoe_cli.moe import convert, emoe_modules, emoefy
from emoe_cli.moe.export import export_dense
from emoe_cli.moe.receipt import all_experts, model_outputs
from emoe_cli.moe.serialize import load_emoe, save_emoe
from tests.conftest import tiny_bert, tiny_gpt2, tiny_llama, tiny_vit


def _inputs(model):
    generator = torch.Generator().manual_seed(3)
    if model.config.model_type == "vit":
        return {"pixel_values": torch.randn(2, 1, 16, 16, generator=generator)}
    return {"input_ids": torch.randint(1, model.config.vocab_size, (2, 12), generator=generator)}


def _fine_tuned(model):
    """Stand-in for fine-tuning: move every weight, then refresh the avg-k keys."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.02)
    for layer in emoe_modules(model):
        layer.refresh_router()
    return model


@pytest.mark.parametrize("build, gate, options", [
    (tiny_bert, "avg_k", {"momentum": 0.5}), (tiny_gpt2, "learned", {}),
    (tiny_llama, "cosine", {"proj_dim": 8}), (tiny_vit, "avg_k", {"normalize": True})])
def test_saved_model_reloads_with_identical_logits(build, gate, options, tmp_path):
    model = _fine_tuned(emoefy(build(), num_experts=8, top_k=3, layers=[0, 1], gate=gate,
                               **options))
    if gate == "avg_k" and options.get("momentum"):  # keys now lag the weights: must be saved
        for layer in emoe_modules(model):
            layer.router.refresh(layer.w1.weight * 2)
    expected = model_outputs(model, _inputs(model))
    save_emoe(model, tmp_path)
    reloaded = load_emoe(tmp_path)
    assert type(reloaded) is type(model)
    saved, loaded = model.state_dict(), reloaded.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    torch.testing.assert_close(model_outputs(reloaded, _inputs(model)), expected, atol=1e-6,
                               rtol=0)  # the same tensors: only BLAS round-off may differ
    for saved, again in zip(emoe_modules(model), emoe_modules(reloaded)):
        assert torch.equal(saved.expert_of_neuron, again.expert_of_neuron)
        assert (again.top_k, again.gate, again.gate_options) == (3, gate, options)


@pytest.mark.parametrize("build", [tiny_bert, tiny_gpt2, tiny_llama, tiny_vit])
def test_dense_export_loads_in_plain_transformers_as_the_model_at_k_equal_n(build, tmp_path):
    model = _fine_tuned(emoefy(build(), num_experts=8, top_k=2, layers="all"))
    with all_experts(model):
        expected = model_outputs(model, _inputs(model))
    export_dense(model, tmp_path)
    dense, info = type(model).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not list(emoe_modules(dense))
    torch.testing.assert_close(model_outputs(dense, _inputs(model)), expected, atol=1e-6, rtol=0)
    assert (model_outputs(dense, _inputs(model)) - model_outputs(model, _inputs(model))).abs() \
        .max() > 1e-6  # the sparse model itself differs: the export is k = N


def test_load_emoe_rejects_a_plain_folder(tmp_path):
    tiny_bert().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has no emoe.json; valid: a folder written by"):
        load_emoe(tmp_path)
    assert isinstance(transformers.AutoModel.from_pretrained(tmp_path), torch.nn.Module)


def test_cluster_cache_clusters_each_layer_once(tmp_path, monkeypatch):
    first = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[0, 2], cluster_cache=tmp_path)
    names = {p.name.split("-", 1)[1] for p in tmp_path.iterdir()}  # <weights hash>-...
    assert names == {"layer0-N8-seed0.pt", "layer2-N8-seed0.pt"}

    def no_clustering(*args):
        raise AssertionError("clustered a cached layer again")

    monkeypatch.setattr(convert, "split_neurons", no_clustering)
    again = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[0, 2], cluster_cache=tmp_path)
    for a, b in zip(emoe_modules(first), emoe_modules(again)):
        assert torch.equal(a.expert_of_neuron, b.expert_of_neuron)
    with pytest.raises(AssertionError, match="clustered a cached layer"):  # new weights: new key
        emoefy(tiny_bert(hidden_act="relu", initializer_range=0.05), num_experts=8, top_k=2,
               layers=[0], cluster_cache=tmp_path)


def test_routing_switches_survive_a_reload(tmp_path):
    model = emoefy(tiny_llama(), num_experts=8, top_k=2, layers=[1], selection="bottom",
                   select="inter", capacity_factor=1.5)
    save_emoe(model, tmp_path)
    layer = next(emoe_modules(load_emoe(tmp_path)))
    assert (layer.selection, layer.select, layer.capacity_factor) == ("bottom", "inter", 1.5)
